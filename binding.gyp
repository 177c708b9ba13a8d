{
  "targets": [
    {
      "target_name": "zerocopy",
      "sources": ["native/zerocopy.cc", "native/polled-sync.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra"],
      # Never unloaded: polled-sync.cc's thread outlives the worker thread that started it.
      "ldflags": ["-Wl,-z,nodelete"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
