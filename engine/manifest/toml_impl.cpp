// The one translation unit that compiles toml++'s implementation (with the fix in toml.h).
#define TOML_IMPLEMENTATION
#include "engine/manifest/toml.h"
