// Placeholder: the fd-level part of the addon's surface is typed here (issue 3).
export interface FdsBinding {}
