{
  "targets": [
    {
      "target_name": "keymesh_native",
      "sources": ["native/keymesh.c", "native/aead.c", "native/aead_batch.c", "native/blake2s.c", "native/offload.c", "native/packet.c", "native/notify.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "cflags_c": ["-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
