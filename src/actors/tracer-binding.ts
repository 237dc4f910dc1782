// Placeholder: the tracer part of the addon's surface is typed here (issue 3).
export interface TracerBinding {}
