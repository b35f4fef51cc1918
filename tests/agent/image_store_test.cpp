// The agent's image cache against a real registry (docker-registry, started here): layers applied in
// order with whiteouts and opaque directories, cache hits, garbage collection, and hostile layers that
// try to leave the root through "..", symlinks and hard links.
#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/image_store.h"
#include "agent/layer.h"
#include "engine/error.h"
#include "platformd/local_postgres.h"
#include "platformd/local_registry.h"
#include "tests/support/registry_push.h"

namespace platform {
namespace {
namespace fs = std::filesystem;

struct Entry {
  std::string path;
  char type = 'f';  // f file, d dir, l symlink, h hardlink
  std::string content_or_target;
  int mode = 0644;
};

// A gzip-compressed tar of the entries, in order.
std::string tar_gz(const std::vector<Entry>& entries) {
  std::string out;
  std::unique_ptr<archive, decltype(&archive_write_free)> a(archive_write_new(), archive_write_free);
  archive_write_add_filter_gzip(a.get());
  // No time in the gzip header: the same entries always give the same blob (layers are shared by digest).
  if (archive_write_set_options(a.get(), "gzip:!timestamp") != ARCHIVE_OK) throw std::runtime_error("gzip option");
  archive_write_set_format_pax_restricted(a.get());
  archive_write_open(
      a.get(), &out, nullptr,
      [](archive*, void* self, const void* buf, std::size_t n) -> la_ssize_t {
        static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& e : entries) {
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> en(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(en.get(), e.path.c_str());
    archive_entry_set_perm(en.get(), static_cast<mode_t>(e.mode));
    archive_entry_set_mtime(en.get(), 1700000000, 0);
    if (e.type == 'd') {
      archive_entry_set_filetype(en.get(), AE_IFDIR);
    } else if (e.type == 'l') {
      archive_entry_set_filetype(en.get(), AE_IFLNK);
      archive_entry_set_symlink(en.get(), e.content_or_target.c_str());
    } else if (e.type == 'h') {
      archive_entry_set_filetype(en.get(), AE_IFREG);
      archive_entry_set_hardlink(en.get(), e.content_or_target.c_str());
    } else {
      archive_entry_set_filetype(en.get(), AE_IFREG);
      archive_entry_set_size(en.get(), static_cast<la_int64_t>(e.content_or_target.size()));
    }
    archive_write_header(a.get(), en.get());
    if (e.type == 'f') archive_write_data(a.get(), e.content_or_target.data(), e.content_or_target.size());
  }
  archive_write_close(a.get());
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class ImageStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new fs::path(fs::temp_directory_path() / ("platform-images-" + std::to_string(::getpid())));
    fs::remove_all(*base_);
    fs::create_directories(*base_);
    registry_ = new dev::LocalRegistry({(*base_ / "registry").string(), dev::free_loopback_port(32000, 36000), ""});
    registry_->start();
  }
  static void TearDownTestSuite() {
    delete registry_;
    fs::remove_all(*base_);
    delete base_;
  }
  void SetUp() override {
    store_dir_ = *base_ / ("store-" + std::to_string(counter_++));
    store_ = std::make_unique<agent::ImageStore>(store_dir_.string());
  }

  // Pushes an image made of these layers under repo:tag; returns its manifest digest.
  std::string push(const std::string& repo_tag, const std::vector<std::vector<Entry>>& layers) {
    auto ref = oci::parse_image_ref(registry_->address() + "/" + repo_tag);
    oci::RegistryClient c;
    Json descriptors = Json::array();
    for (const auto& l : layers) {
      auto blob = tar_gz(l);
      descriptors.push_back({{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                             {"digest", harness::push_blob(c, ref, blob)},
                             {"size", blob.size()}});
    }
    auto config = Json{{"architecture", "amd64"},
                       {"os", "linux"},
                       {"config", {{"Entrypoint", {"/bin/app"}}, {"Env", {"PATH=/bin"}}, {"WorkingDir", "/srv"}}},
                       {"rootfs", {{"type", "layers"}, {"diff_ids", Json::array()}}}}
                      .dump();
    Json m = {{"schemaVersion", 2},
              {"mediaType", oci::kOciManifest},
              {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                          {"digest", harness::push_blob(c, ref, config)}, {"size", config.size()}}},
              {"layers", descriptors}};
    return harness::push_manifest(c, ref, ref.tag, oci::kOciManifest, m.dump());
  }
  oci::ImageRef ref(const std::string& repo_tag) { return oci::parse_image_ref(registry_->address() + "/" + repo_tag); }

  static inline fs::path* base_ = nullptr;
  static inline dev::LocalRegistry* registry_ = nullptr;
  static inline int counter_ = 0;
  fs::path store_dir_;
  std::unique_ptr<agent::ImageStore> store_;
};

TEST_F(ImageStoreTest, LayersApplyInOrderWithWhiteoutsOpaqueDirectoriesAndLinks) {
  auto digest = push("app/layers:v1",
                     {{{"etc", 'd', "", 0755},
                       {"etc/a", 'f', "one"},
                       {"etc/b", 'f', "bee"},
                       {"data/x", 'f', "x"},
                       {"data/y", 'f', "y"},
                       {"usr/bin/tool", 'f', "#!/bin/sh\n", 04755},
                       {"bin", 'l', "usr/bin"},
                       {"gone/deep/file", 'f', "z"}},
                      {{"etc/.wh.b", 'f', ""},
                       {"etc/a", 'f', "two"},
                       {"data/.wh..wh..opq", 'f', ""},
                       {"data/z", 'f', "zed"},
                       {"etc/a2", 'h', "etc/a"},
                       {".wh.gone", 'f', ""}}});
  auto img = store_->pull(ref("app/layers:v1"));
  EXPECT_EQ(img.digest, digest);
  EXPECT_FALSE(img.cached);
  EXPECT_GT(img.downloaded_bytes, 0);
  const fs::path root = img.rootfs;
  EXPECT_EQ(slurp(root / "etc/a"), "two");
  EXPECT_FALSE(fs::exists(root / "etc/b"));
  EXPECT_FALSE(fs::exists(root / "etc/.wh.b"));
  EXPECT_FALSE(fs::exists(root / "data/x"));
  EXPECT_FALSE(fs::exists(root / "data/y"));
  EXPECT_EQ(slurp(root / "data/z"), "zed");
  EXPECT_FALSE(fs::exists(root / "data/.wh..wh..opq"));
  EXPECT_FALSE(fs::exists(root / "gone"));
  EXPECT_EQ(fs::read_symlink(root / "bin"), "usr/bin");
  EXPECT_EQ(slurp(root / "bin/tool"), "#!/bin/sh\n");
  struct stat a {}, a2 {}, tool {};
  ASSERT_EQ(::stat((root / "etc/a").c_str(), &a), 0);
  ASSERT_EQ(::stat((root / "etc/a2").c_str(), &a2), 0);
  EXPECT_EQ(a.st_ino, a2.st_ino);
  ASSERT_EQ(::stat((root / "usr/bin/tool").c_str(), &tool), 0);
  EXPECT_EQ(tool.st_mode & 07777, 04755u);
  EXPECT_EQ(img.config["Entrypoint"], Json::array({"/bin/app"}));
  EXPECT_EQ(img.config["WorkingDir"], "/srv");
}

TEST_F(ImageStoreTest, ASecondPullIsServedFromTheCache) {
  auto digest = push("app/cache:v1", {{{"hello", 'f', "world"}}});
  auto first = store_->pull(ref("app/cache:v1"));
  EXPECT_FALSE(first.cached);
  auto second = store_->pull(ref("app/cache:v1"));
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.downloaded_bytes, 0);
  EXPECT_EQ(second.rootfs, first.rootfs);
  // By digest the cache needs no registry at all.
  auto by_digest = ref("app/cache@" + digest);
  by_digest.registry = "127.0.0.1:1";  // nothing listens there
  EXPECT_TRUE(store_->pull(by_digest).cached);
  EXPECT_TRUE(store_->cached(digest).has_value());
}

TEST_F(ImageStoreTest, GarbageCollectionKeepsOnlyWhatIsAskedForAndWhatItUses) {
  auto keep = push("app/gc-keep:v1", {{{"shared", 'f', "same bytes"}}, {{"mine", 'f', "keep"}}});
  auto drop = push("app/gc-drop:v1", {{{"shared", 'f', "same bytes"}}, {{"mine", 'f', "drop"}}});
  store_->pull(ref("app/gc-keep:v1"));
  store_->pull(ref("app/gc-drop:v1"));
  fs::create_directories(store_dir_ / "images/.tmp-interrupted/rootfs");
  auto blobs_before = std::distance(fs::directory_iterator(store_dir_ / "blobs/sha256"), fs::directory_iterator());
  auto r = store_->gc({keep});
  EXPECT_EQ(r.images_removed, 1);
  EXPECT_EQ(r.blobs_removed, 1);  // drop's own layer; the shared layer and the (identical) config stay
  EXPECT_GT(r.bytes_freed, 0);
  EXPECT_TRUE(store_->cached(keep).has_value());
  EXPECT_FALSE(store_->cached(drop).has_value());
  EXPECT_FALSE(fs::exists(store_dir_ / "images/.tmp-interrupted"));
  auto blobs_after = std::distance(fs::directory_iterator(store_dir_ / "blobs/sha256"), fs::directory_iterator());
  EXPECT_EQ(blobs_before - blobs_after, 1);
  EXPECT_TRUE(store_->pull(ref("app/gc-keep:v1")).cached);
}

// Each hostile layer is refused, or its writes land inside the root; nothing outside ever changes.
TEST_F(ImageStoreTest, HostileLayersNeverReachOutsideTheRoot) {
  const fs::path outside = *base_ / "outside";
  fs::create_directories(outside);
  std::ofstream(outside / "keep") << "host data";
  const auto out = outside.string();

  auto refused = [&](const std::string& tag, const std::vector<Entry>& layer, const std::string& words) {
    push("evil/app:" + tag, {layer});
    try {
      store_->pull(ref("evil/app:" + tag));
      ADD_FAILURE() << tag << " was applied";
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.error().code, ErrorCode::invalid_request) << tag;
      EXPECT_NE(e.error().message.find(words), std::string::npos) << tag << ": " << e.error().message;
    }
  };
  refused("dotdot", {{"../../escape", 'f', "x"}}, "\"..\"");
  refused("dotdot-deep", {{"a/../../escape", 'f', "x"}}, "\"..\"");
  refused("hardlink-dotdot", {{"h", 'h', "../../" + out + "/keep"}}, "outside the image root");
  refused("hardlink-absolute", {{"h", 'h', out + "/keep"}}, "does not exist in the image");
  refused("hardlink-via-symlink", {{"lnk", 'l', out}, {"h", 'h', "lnk/keep"}}, "does not exist in the image");

  // Contained: symlinks are resolved inside the root, so these writes and whiteouts stay in it.
  push("evil/app:contained", {{{"abs", 'l', out},
                               {"abs/planted", 'f', "in the root"},
                               {"rel", 'l', "../../../../../../../../" + out},
                               {"rel/planted2", 'f', "in the root"},
                               {"abs/.wh.keep", 'f', ""}}});
  auto img = store_->pull(ref("evil/app:contained"));
  EXPECT_FALSE(fs::exists(outside / "planted"));
  EXPECT_FALSE(fs::exists(outside / "planted2"));
  EXPECT_EQ(slurp(outside / "keep"), "host data");
  EXPECT_EQ(slurp(fs::path(img.rootfs) / out.substr(1) / "planted"), "in the root");
  EXPECT_EQ(slurp(fs::path(img.rootfs) / out.substr(1) / "planted2"), "in the root");
  // A later layer writing over a symlink replaces the link, never what it points to.
  push("evil/app:overwrite", {{{"f", 'l', out + "/keep"}, {"d", 'l', out}},
                              {{"f", 'f', "replaced in the root"}, {"d", 'd', "", 0700}}});
  auto over = store_->pull(ref("evil/app:overwrite"));
  EXPECT_EQ(slurp(fs::path(over.rootfs) / "f"), "replaced in the root");
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(fs::path(over.rootfs) / "d")));
  EXPECT_EQ(slurp(outside / "keep"), "host data");
  EXPECT_EQ((fs::status(outside).permissions() & fs::perms::others_read), fs::perms::others_read);
  // No refused image left anything behind.
  for (const auto& e : fs::directory_iterator(store_dir_ / "images"))
    EXPECT_EQ(e.path().filename().string().rfind(".tmp-", 0), std::string::npos) << e.path();
}

TEST_F(ImageStoreTest, BlobsAreVerifiedAndBrokenOnesLeaveNothing) {
  auto r = ref("app/blob:v1");
  oci::RegistryClient c;
  const std::string bytes = "exactly these bytes";
  auto digest = harness::push_blob(c, r, bytes);
  const auto dest = (store_dir_ / "blob").string();
  for (std::int64_t wrong : {static_cast<std::int64_t>(bytes.size()) - 1, static_cast<std::int64_t>(bytes.size()) + 1}) {
    try {
      c.fetch_blob(r, digest, wrong, dest);
      ADD_FAILURE() << "size " << wrong << " accepted";
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.error().code, ErrorCode::unavailable);
    }
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_FALSE(fs::exists(dest + ".part"));
  }
  c.fetch_blob(r, digest, static_cast<std::int64_t>(bytes.size()), dest);
  EXPECT_EQ(slurp(dest), bytes);
  try {
    c.fetch_blob(r, "sha256:" + std::string(64, '1'), 1, dest + "2");
    ADD_FAILURE() << "a missing blob was fetched";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.error().code, ErrorCode::not_found);
  }
  // A layer that is not a tar at all.
  auto bad = (store_dir_ / "not-a-tar").string();
  std::ofstream(bad) << "plain text, not an archive";
  fs::create_directories(store_dir_ / "root");
  EXPECT_THROW(agent::apply_layer((store_dir_ / "root").string(), bad), PlatformError);
}

}  // namespace
}  // namespace platform
