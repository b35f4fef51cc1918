# Writes OUT: a C++ source returning the JSON Schema file IN as a string (see manifest.h).
file(READ ${IN} CONTENT)
file(WRITE ${OUT} "// Generated from engine/manifest/platform.schema.json; do not edit.\n#include \"engine/manifest/manifest.h\"\n\nnamespace platform::manifest {\nstd::string_view json_schema() {\n  return R\"platform_schema(${CONTENT})platform_schema\";\n}\n}  // namespace platform::manifest\n")
