#!/usr/bin/env bash
# Builds the native layer: the node-addon-api addon with npm's bundled node-gyp (headers from
# nodedir=/usr in .npmrc, never downloaded), then the helper executable and the stub.
set -euo pipefail
cd "$(dirname "$0")/.."
gyp="${npm_config_node_gyp:-$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js}"
if [ -f binding.gyp ]; then node "$gyp" rebuild --loglevel=warn >/dev/null; fi
if [ -f native/Makefile ]; then make -s -C native; fi
