// Secrets: the key file, AES-256-GCM sealing bound to its context, keyed digests, the delivered file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/crypto.h"
#include "engine/error.h"
#include "engine/secrets/secrets.h"

using namespace platform;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("platform-secrets-test-" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
};

// Values that break naive formats: newlines, quotes, '=', NUL, invalid and valid UTF-8, a trailing
// newline, an empty value, a large one.
std::map<std::string, std::string> awkward() {
  return {{"EMPTY", ""},
          {"MULTILINE", "line one\nline two\n"},
          {"QUOTES", "\"double\" 'single' `back`"},
          {"EQUALS", "a=b=c"},
          {"NUL", std::string("before\0after", 12)},
          {"UTF8", "gr\xc3\xbc\xc3\x9f dich \xe2\x9c\x93"},
          {"BINARY", std::string("\xff\xfe\x00\x01\n\n", 6)},
          {"BIG", std::string(1 << 20, 'x')},
          {"_underscore1", "platform-secrets 1\nFAKE 3\nabc\n"}};
}
}  // namespace

TEST(Secrets, KeyFileIsCreatedPrivateAndNeverOverwritten) {
  TempDir dir;
  auto path = (dir.path / "secrets.key").string();
  auto k = secrets::create_key_file(path);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(k.bytes.size(), 32u);
  auto loaded = secrets::load_key_file(path);
  EXPECT_EQ(loaded.id, k.id);
  EXPECT_EQ(loaded.bytes, k.bytes);
  EXPECT_THROW(secrets::create_key_file(path), PlatformError);  // never replaces a key
  ::chmod(path.c_str(), 0644);
  try {
    secrets::load_key_file(path);
    FAIL() << "a world-readable key file was accepted";
  } catch (const PlatformError& e) {
    EXPECT_NE(e.error().message.find("chmod 600"), std::string::npos) << e.error().message;
  }
  ::chmod(path.c_str(), 0600);
  std::ofstream(path) << "not a key\n";
  EXPECT_THROW(secrets::load_key_file(path), PlatformError);
}

TEST(Secrets, SealOpensOnlyWithItsKeyAndContext) {
  TempDir dir;
  auto k1 = secrets::create_key_file((dir.path / "k1").string());
  auto k2 = secrets::create_key_file((dir.path / "k2").string());
  for (const auto& [name, value] : awkward()) {
    auto context = "env_x/" + name + "/v1";
    auto s = secrets::seal(k1, value, context);
    EXPECT_EQ(s.key_id, k1.id);
    if (value.size() >= 4) {
      EXPECT_EQ(base64_decode(s.ciphertext)->find(value), std::string::npos) << name;
    }
    EXPECT_EQ(secrets::open({k2, k1}, s, context), value) << name;  // found by key id among several
    EXPECT_THROW(secrets::open({k1}, s, context + "x"), PlatformError) << name;  // moved elsewhere
    EXPECT_THROW(secrets::open({k2}, s, context), PlatformError) << name;        // key not loaded
    auto forged = s;
    forged.key_id = k2.id;
    EXPECT_THROW(secrets::open({k1, k2}, forged, context), PlatformError) << name;  // wrong key
    auto flipped = s;
    auto raw = *base64_decode(flipped.ciphertext);
    raw[0] = static_cast<char>(raw[0] ^ 1);
    flipped.ciphertext = base64_encode(raw);
    EXPECT_THROW(secrets::open({k1}, flipped, context), PlatformError) << name;  // tampered
  }
  // A fresh nonce every time: the same value seals differently.
  auto a = secrets::seal(k1, "same", "c"), b = secrets::seal(k1, "same", "c");
  EXPECT_NE(a.nonce, b.nonce);
  EXPECT_NE(a.ciphertext, b.ciphertext);
}

TEST(Secrets, DigestsAreKeyedAndStable) {
  TempDir dir;
  auto k1 = secrets::create_key_file((dir.path / "k1").string());
  auto k2 = secrets::create_key_file((dir.path / "k2").string());
  EXPECT_EQ(secrets::digest(k1, "hunter2"), secrets::digest(k1, "hunter2"));
  EXPECT_NE(secrets::digest(k1, "hunter2"), secrets::digest(k1, "hunter3"));
  EXPECT_NE(secrets::digest(k1, "hunter2"), secrets::digest(k2, "hunter2"));
  EXPECT_EQ(secrets::digest(k1, "x").rfind("hmac-sha256:", 0), 0u);
  EXPECT_EQ(secrets::digest(k1, "hunter2").find(sha256_hex("hunter2").substr(0, 16)), std::string::npos);
}

TEST(Secrets, TheDeliveredFileRoundTripsAnyBytes) {
  auto values = awkward();
  auto file = secrets::encode_file(values);
  EXPECT_EQ(file.rfind("platform-secrets 1\n", 0), 0u);
  EXPECT_EQ(secrets::decode_file(file), values);
  EXPECT_EQ(secrets::encode_file({}), "platform-secrets 1\n");
  EXPECT_TRUE(secrets::decode_file("platform-secrets 1\n").empty());
  // The documented example, byte for byte (docs/secrets.md).
  EXPECT_EQ(secrets::encode_file({{"API_KEY", "s3cr3t"}, {"PEM", "-----BEGIN-----\nabc\n-----END-----\n"}}),
            "platform-secrets 1\nAPI_KEY 6\ns3cr3t\nPEM 34\n-----BEGIN-----\nabc\n-----END-----\n\n");
}

TEST(Secrets, MalformedFilesAreRefusedWithTheOffset) {
  for (const char* bad : {"", "platform-secrets 2\n", "platform-secrets 1\nA 5\nabc\n", "platform-secrets 1\nA\n",
                          "platform-secrets 1\nA x\n\n", "platform-secrets 1\n1A 1\nx\n",
                          "platform-secrets 1\nB 1\nx\nA 1\ny\n", "platform-secrets 1\nA 1\nx\nA 1\ny\n",
                          "platform-secrets 1\nA 1\nxy", "platform-secrets 1\nA 01\nx\n", "platform-secrets 1\nA 18446744073709551615\nx\n"}) {
    try {
      secrets::decode_file(bad);
      FAIL() << "accepted: " << bad;
    } catch (const PlatformError& e) {
      EXPECT_NE(e.error().message.find("at byte"), std::string::npos) << e.error().message;
    }
  }
  EXPECT_THROW(secrets::encode_file({{"BAD-NAME", "x"}}), PlatformError);
}

TEST(Secrets, Base64) {
  for (const std::string& s : std::vector<std::string>{"", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\0\xff", 2)})
    EXPECT_EQ(base64_decode(base64_encode(s)), s);
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  for (const char* bad : {"Zm9", "Zm9v!", "Zg==Zg==", "=Zg=", "Z===", "Zm9v\n"}) EXPECT_FALSE(base64_decode(bad)) << bad;
}
