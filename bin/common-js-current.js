// Whether dist-cjs/ (the CommonJS copy bin/crr.js runs) was built after dist/: when tsc ran by
// hand since, bin/crr.js runs dist/ instead. Its own file so the bench can ask the same question.
'use strict';
const { statSync } = require('node:fs');
const { join } = require('node:path');

exports.commonJsIsCurrent = function commonJsIsCurrent() {
  const built = (path) => statSync(join(__dirname, '..', path)).mtimeMs;
  try {
    return built('dist-cjs/package.json') >= built('dist/index.js');
  } catch {
    return false;
  }
};
