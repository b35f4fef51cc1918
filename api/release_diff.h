#pragma once
// What a deploy or rollback changes, as a list a person can read and a script can filter. Pure: it
// compares two release views and touches no database (tests/api/release_diff_test.cpp).
#include "engine/json.h"

namespace platform::api {

// A release view:
//   {"image": {"ref", "digest"}, "manifest": <manifest::to_json>,
//    "config":  {"version": N, "keys": {NAME: <version that set it>}},
//    "secrets": {"version": N, "keys": {NAME: <keyed digest>}}}
// with only the keys the manifest declares (what the release delivers). `from` is null before the
// first release.
//
// Each change: {"kind": image|process|endpoint|route|volume|config|secret, "action": add|change|remove,
// "name", "summary", and for processes "fields": [{"field", "from", "to"}]}. Values of config and
// secrets never appear: a changed key says only that it changed.
Json diff_releases(const Json& from, const Json& to);

}  // namespace platform::api
