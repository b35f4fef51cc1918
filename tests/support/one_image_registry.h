#pragma once
// A docker-registry of a test's own, in the harness's scratch folder, holding one small image
// (acme/api:v1, one layer that need not be a tar): enough for a deploy to resolve and the scheduler to
// place, where no instance really runs. Stopped with the object.
#include <string>

#include "engine/oci/registry.h"
#include "platformd/local_registry.h"
#include "tests/support/pg.h"
#include "tests/support/registry_push.h"

namespace platform::harness {

struct OneImageRegistry {
  dev::LocalRegistry registry;
  std::string image;  // "127.0.0.1:<port>/acme/api:v1"

  // `name`: the registry's folder under the scratch root, one per test.
  explicit OneImageRegistry(const std::string& name)
      : registry({(PgEnvironment::get().root() / name).string(), dev::free_loopback_port(36000, 40000), ""}) {
    registry.start();
    image = registry.address() + "/acme/api:v1";
    oci::RegistryClient rc;
    auto ref = oci::parse_image_ref(image);
    push_manifest(rc, ref, "v1", oci::kOciManifest, push_image(rc, ref, "amd64", "layer v1"));
  }
};

}  // namespace platform::harness
