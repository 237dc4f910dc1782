{
  "targets": [
    {
      "target_name": "crr_native",
      "sources": [
        "native/addon/addon.cc",
        "native/addon/tracer.cc",
        "native/addon/tracer-thread.cc",
        "native/addon/tracer-ops.cc",
        "native/addon/tracer-vm.cc",
        "native/addon/tracer-threads.cc",
        "native/addon/fds.cc",
        "native/addon/sockdiag.cc",
        "native/addon/uffd.cc",
        "native/addon/spawn.cc",
        "native/addon/files.cc",
        "native/addon/pagecache.cc",
        "native/addon/channel.cc",
        "native/addon/namespaces.cc",
        "native/addon/sysvipc.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/stub"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions"]
    }
  ]
}
