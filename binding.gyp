# node-gyp twin of CMakeLists.txt (the primary build is cmake-js: scripts/build-native.mjs).
# Built by scripts/build-gyp.mjs in a staging folder (build-gyp/) so it never clobbers build/.
# The op sources are compiled into the addon itself (object files, not a static archive), so their
# TORCH_LIBRARY registrations survive linking. CUDA kernels are CMake-only.
{
  "variables": {
    "torch_root%": "<!(node scripts/libtorch.mjs --root)",
    "addon_api%": "<!(node -p \"require('node-addon-api').include_dir\")"
  },
  "targets": [
    {
      "target_name": "llmrl",
      "sources": [
        "<!@(node -e \"const fs=require('fs');const out=['native/ops/registry.cpp'];for(const d of fs.readdirSync('native/ops',{withFileTypes:true}))if(d.isDirectory())for(const f of ['cpu.cpp','autograd.cpp'])if(fs.existsSync('native/ops/'+d.name+'/'+f))out.push('native/ops/'+d.name+'/'+f);for(const f of fs.readdirSync('native/binding'))if(f.endsWith('.cpp'))out.push('native/binding/'+f);console.log(out.join(' '))\")"
      ],
      "include_dirs": [
        "<(addon_api)",
        "native/ops",
        "<(torch_root)/include",
        "<(torch_root)/include/torch/csrc/api/include"
      ],
      "defines": [
        "NAPI_VERSION=9",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "_GLIBCXX_USE_CXX11_ABI=1"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags_cc": ["-std=c++20", "-O2", "-fexceptions", "-frtti", "-Wno-unused-parameter"],
      "libraries": [
        "-Wl,--no-as-needed",
        "-L<(torch_root)/lib",
        "-ltorch", "-ltorch_cpu", "-lc10",
        "-Wl,-rpath,<(torch_root)/lib"
      ]
    }
  ]
}
