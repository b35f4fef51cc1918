// The OCI client against a real registry (Debian's docker-registry, started here): tags to digests,
// OCI indexes and Docker manifest lists narrowed to linux/amd64, digests verified, missing things and
// dead registries as clear errors, and the Bearer token challenge answered with a token service that a
// registry configured for token auth really checks (signature, issuer, audience, scope).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include "api/client.h"
#include "engine/crypto.h"
#include "engine/oci/image_ref.h"
#include "engine/oci/registry.h"
#include "platformd/local_postgres.h"
#include "platformd/local_registry.h"
#include "tests/support/registry_push.h"

namespace platform {
namespace {
namespace fs = std::filesystem;

// A scratch folder removed when the test ends, passed or not.
struct Scratch {
  explicit Scratch(const std::string& name)
      : path(fs::temp_directory_path() / ("platform-oci-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

ErrorCode code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const PlatformError& e) {
    return e.error().code;
  }
  return ErrorCode::internal;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const PlatformError& e) {
    return e.error().message;
  }
  return "(no error)";
}

// ---- image references (no registry needed) ----

TEST(ImageRef, ParsesRegistryRepositoryTagAndDigest) {
  auto r = oci::parse_image_ref("127.0.0.1:7071/sample/echo:v1");
  EXPECT_EQ(r.registry, "127.0.0.1:7071");
  EXPECT_EQ(r.repository, "sample/echo");
  EXPECT_EQ(r.tag, "v1");
  EXPECT_TRUE(r.loopback());
  auto d = oci::parse_image_ref("localhost:5000/a/b@sha256:" + std::string(64, 'a'));
  EXPECT_EQ(d.tag, "");
  EXPECT_EQ(d.digest, "sha256:" + std::string(64, 'a'));
  auto hub = oci::parse_image_ref("nginx");
  EXPECT_EQ(hub.registry, "docker.io");
  EXPECT_EQ(hub.repository, "library/nginx");
  EXPECT_EQ(hub.tag, "latest");
  EXPECT_EQ(hub.api_host(), "registry-1.docker.io");
  EXPECT_FALSE(hub.loopback());
  EXPECT_EQ(oci::parse_image_ref("ghcr.io/org/app:1.2").registry, "ghcr.io");
  EXPECT_EQ(oci::parse_image_ref("[::1]:5000/x:y").registry, "[::1]:5000");
  EXPECT_TRUE(oci::parse_image_ref("[::1]:5000/x:y").loopback());
}

TEST(ImageRef, RefusesMalformedReferencesWithTheRule) {
  for (const std::string& bad : std::vector<std::string>{"", "Sample/Echo:v1", "a b", "repo:", "repo@sha256:abc", "repo:-x", "a//b",
                                "127.0.0.1:7071/", "x:" + std::string(200, 'a')}) {
    try {
      oci::parse_image_ref(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.error().code, ErrorCode::invalid_request) << bad;
      EXPECT_NE(e.error().hint.find("[registry/]repository[:tag]"), std::string::npos);
    }
  }
}

// ---- against a real registry ----

class RegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new Scratch("registry");
    registry_ = new dev::LocalRegistry({dir_->path.string(), dev::free_loopback_port(32000, 36000), ""});
    registry_->start();
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete dir_;
  }
  oci::ImageRef repo(const std::string& name) { return oci::parse_image_ref(registry_->address() + "/" + name); }

  static inline Scratch* dir_ = nullptr;
  static inline dev::LocalRegistry* registry_ = nullptr;
  oci::RegistryClient client_;
};

TEST_F(RegistryTest, ResolvesATagToItsManifestDigest) {
  auto ref = repo("plain/app:v1");
  auto body = harness::push_image(client_, ref, "amd64", "layer one");
  auto pushed = harness::push_manifest(client_, ref, "v1", oci::kOciManifest, body);
  auto r = client_.resolve(ref);
  EXPECT_EQ(r.digest, pushed);
  EXPECT_EQ(r.digest, oci::sha256_digest(body));
  EXPECT_EQ(r.media_type, oci::kOciManifest);
  EXPECT_TRUE(r.index_digest.empty());
  EXPECT_TRUE(oci::valid_digest(r.config_digest));
  EXPECT_GT(r.size, static_cast<std::int64_t>(body.size()));
  // By digest too, and the JSON form names both.
  auto by_digest = ref;
  by_digest.tag.clear();
  by_digest.digest = pushed;
  EXPECT_EQ(client_.resolve(by_digest).digest, pushed);
  EXPECT_EQ(r.to_json()["digest"], pushed);
}

TEST_F(RegistryTest, AnOciIndexResolvesToItsLinuxAmd64Manifest) {
  auto ref = repo("multi/app:v1");
  auto arm = harness::push_manifest(client_, ref, "arm", oci::kOciManifest,
                                    harness::push_image(client_, ref, "arm64", "arm layer"));
  auto amd_body = harness::push_image(client_, ref, "amd64", "amd layer");
  auto amd = harness::push_manifest(client_, ref, "amd", oci::kOciManifest, amd_body);
  Json index = {{"schemaVersion", 2},
                {"mediaType", oci::kOciIndex},
                {"manifests",
                 {{{"mediaType", oci::kOciManifest}, {"digest", arm}, {"size", 1},
                   {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
                  {{"mediaType", oci::kOciManifest}, {"digest", amd}, {"size", amd_body.size()},
                   {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  auto index_digest = harness::push_manifest(client_, ref, "v1", oci::kOciIndex, index.dump());
  auto r = client_.resolve(ref);
  EXPECT_EQ(r.digest, amd);
  EXPECT_EQ(r.index_digest, index_digest);
}

TEST_F(RegistryTest, ADockerManifestListResolvesToItsLinuxAmd64Manifest) {
  auto ref = repo("docker/app:v1");
  auto amd_body = harness::push_image(client_, ref, "amd64", "docker amd layer", true);
  auto amd = harness::push_manifest(client_, ref, "amd", oci::kDockerManifest, amd_body);
  Json list = {{"schemaVersion", 2},
               {"mediaType", oci::kDockerList},
               {"manifests",
                {{{"mediaType", oci::kDockerManifest}, {"digest", amd}, {"size", amd_body.size()},
                  {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}}}};
  harness::push_manifest(client_, ref, "v1", oci::kDockerList, list.dump());
  auto r = client_.resolve(ref);
  EXPECT_EQ(r.digest, amd);
  EXPECT_EQ(r.media_type, oci::kDockerManifest);
}

TEST_F(RegistryTest, AnIndexWithoutLinuxAmd64IsNotFoundAndSaysWhatItHas) {
  auto ref = repo("armonly/app:v1");
  auto arm = harness::push_manifest(client_, ref, "arm", oci::kOciManifest,
                                    harness::push_image(client_, ref, "arm64", "only arm"));
  Json index = {{"schemaVersion", 2},
                {"mediaType", oci::kOciIndex},
                {"manifests",
                 {{{"mediaType", oci::kOciManifest}, {"digest", arm}, {"size", 1},
                   {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}}}}};
  harness::push_manifest(client_, ref, "v1", oci::kOciIndex, index.dump());
  EXPECT_EQ(code_of([&] { client_.resolve(ref); }), ErrorCode::not_found);
  EXPECT_NE(message_of([&] { client_.resolve(ref); }).find("linux/arm64"), std::string::npos);
}

TEST_F(RegistryTest, MissingTagsRepositoriesAndDigestsAreNotFound) {
  auto ref = repo("plain/app:v1");
  harness::push_manifest(client_, ref, "v1", oci::kOciManifest, harness::push_image(client_, ref, "amd64", "x"));
  auto missing_tag = repo("plain/app:nope");
  EXPECT_EQ(code_of([&] { client_.resolve(missing_tag); }), ErrorCode::not_found);
  EXPECT_NE(message_of([&] { client_.resolve(missing_tag); }).find("nope"), std::string::npos);
  EXPECT_EQ(code_of([&] { client_.resolve(repo("never/pushed:v1")); }), ErrorCode::not_found);
  auto missing_digest = repo("plain/app@sha256:" + std::string(64, '0'));
  EXPECT_EQ(code_of([&] { client_.resolve(missing_digest); }), ErrorCode::not_found);
  EXPECT_EQ(exit_code(ErrorCode::not_found), 7);
}

TEST_F(RegistryTest, AnUnreachableRegistryIsUnavailable) {
  auto port = dev::free_loopback_port(36000, 40000);  // nothing listens there
  auto ref = oci::parse_image_ref("127.0.0.1:" + std::to_string(port) + "/a/b:v1");
  EXPECT_EQ(code_of([&] { client_.resolve(ref); }), ErrorCode::unavailable);
  EXPECT_EQ(exit_code(ErrorCode::unavailable), 1);
}

// A registry that accepts the connection and never answers (as one whose host vanished without a reset
// looks): the resolve ends at its deadline, timed_out, instead of holding the deploy for good.
TEST_F(RegistryTest, ARegistryThatNeverAnswersTimesOut) {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent(io, {boost::asio::ip::make_address("127.0.0.1"), 0});  // never accepts
  auto ref = oci::parse_image_ref("127.0.0.1:" + std::to_string(silent.local_endpoint().port()) + "/a/b:v1");
  oci::RegistryOptions options;
  options.timeout = std::chrono::milliseconds(300);
  oci::RegistryClient impatient(options);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(code_of([&] { impatient.resolve(ref); }), ErrorCode::timed_out);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

// ---- token auth ----

std::string b64url(std::string_view data) {
  auto s = base64_encode(data);
  for (auto& c : s) c = c == '+' ? '-' : c == '/' ? '_' : c;
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

// A token service as a registry's auth server: RS256 JWTs with the certificate in x5c, scoped to what
// was asked for. The registry verifies them against the certificate bundle it was given.
class TokenService {
 public:
  TokenService(const fs::path& dir, std::string issuer, std::string service)
      : issuer_(std::move(issuer)), service_(std::move(service)) {
    key_ = dir / "token.key";
    cert_ = dir / "token.crt";
    auto cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=platform-test-token -keyout " +
               key_.string() + " -out " + cert_.string() + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("openssl req failed");
    port_ = dev::free_loopback_port(40000, 44000);
    acceptor_ = std::make_unique<boost::asio::ip::tcp::acceptor>(
        io_, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"),
                                            static_cast<unsigned short>(port_)));
    thread_ = std::thread([this] { serve(); });
  }
  ~TokenService() {
    stop_ = true;
    boost::system::error_code ec;
    boost::asio::ip::tcp::socket poke(io_);
    poke.connect(acceptor_->local_endpoint(), ec);  // wakes the blocking accept
    thread_.join();
  }
  std::string realm() const { return "http://127.0.0.1:" + std::to_string(port_) + "/token"; }
  const fs::path& cert() const { return cert_; }
  int issued() const { return issued_; }
  std::string last_query() const {
    std::lock_guard lock(mu_);
    return last_query_;
  }

 private:
  void serve() {
    namespace http = boost::beast::http;
    while (!stop_) {
      boost::asio::ip::tcp::socket socket(io_);
      boost::system::error_code ec;
      acceptor_->accept(socket, ec);
      if (ec || stop_) continue;
      boost::beast::flat_buffer buffer;
      http::request<http::string_body> req;
      http::read(socket, buffer, req, ec);
      if (ec) continue;
      std::string target(req.target());
      std::string query = target.substr(target.find('?') == std::string::npos ? target.size() : target.find('?') + 1);
      {
        std::lock_guard lock(mu_);
        last_query_ = query;
      }
      std::string repository;  // scope=repository%3A<name>%3Apull
      if (auto s = query.find("scope=repository%3A"); s != std::string::npos) {
        auto rest = query.substr(s + 19);
        repository = rest.substr(0, rest.find("%3A"));
        for (std::size_t i; (i = repository.find("%2F")) != std::string::npos;) repository.replace(i, 3, "/");
      }
      http::response<http::string_body> res{http::status::ok, req.version()};
      res.set(http::field::content_type, "application/json");
      res.body() = Json{{"token", token(repository)}}.dump();
      res.prepare_payload();
      ++issued_;  // before the answer: a client that has its token may look at the count at once
      http::write(socket, res, ec);
    }
  }

  std::string token(const std::string& repository) const {
    std::ifstream cert_in(cert_);
    std::string pem((std::istreambuf_iterator<char>(cert_in)), {});
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    std::unique_ptr<X509, decltype(&X509_free)> x509(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr), X509_free);
    unsigned char* der = nullptr;
    int der_len = i2d_X509(x509.get(), &der);
    std::string cert_der(reinterpret_cast<char*>(der), static_cast<std::size_t>(der_len));
    OPENSSL_free(der);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
    Json header = {{"typ", "JWT"}, {"alg", "RS256"}, {"x5c", {base64_encode(cert_der)}}};
    Json claims = {{"iss", issuer_}, {"sub", ""}, {"aud", service_}, {"exp", now + 300}, {"nbf", now - 10},
                   {"iat", now}, {"jti", random_secret(8)},
                   {"access", {{{"type", "repository"}, {"name", repository}, {"actions", {"pull", "push"}}}}}};
    auto signing_input = b64url(header.dump()) + "." + b64url(claims.dump());
    FILE* f = std::fopen(key_.c_str(), "r");
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(PEM_read_PrivateKey(f, nullptr, nullptr, nullptr),
                                                               EVP_PKEY_free);
    std::fclose(f);
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    std::size_t len = 0;
    EVP_DigestSignInit(md.get(), nullptr, EVP_sha256(), nullptr, pkey.get());
    EVP_DigestSign(md.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(signing_input.data()),
                   signing_input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(md.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
    sig.resize(len);
    return signing_input + "." + b64url(sig);
  }

  std::string issuer_, service_;
  fs::path key_, cert_;
  int port_ = 0;
  boost::asio::io_context io_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> issued_{0};
  mutable std::mutex mu_;
  std::string last_query_;
};

TEST(RegistryAuth, TheBearerChallengeIsAnsweredWithATokenTheRegistryAccepts) {
  Scratch scratch("auth");
  const auto& dir = scratch.path;
  {
    TokenService tokens(dir, "platform-test-issuer", "platform-test-registry");
    std::string auth = "auth:\n  token:\n    realm: " + tokens.realm() +
                       "\n    service: platform-test-registry\n    issuer: platform-test-issuer\n"
                       "    rootcertbundle: " + tokens.cert().string() + "\n";
    dev::LocalRegistry registry({(dir / "registry").string(), dev::free_loopback_port(44000, 48000), auth});
    registry.start();
    auto ref = oci::parse_image_ref(registry.address() + "/private/app:v1");

    // The registry really wants a token: a bare request is refused with the challenge.
    auto bare = api::Client("http://" + registry.address(), "").request("GET", "/v2/private/app/manifests/v1");
    EXPECT_EQ(bare.status, 401);
    EXPECT_NE(bare.headers["www-authenticate"].find("Bearer realm="), std::string::npos);

    oci::RegistryClient client;
    auto body = harness::push_image(client, ref, "amd64", "private layer");
    auto pushed = harness::push_manifest(client, ref, "v1", oci::kOciManifest, body);
    EXPECT_GE(tokens.issued(), 1);
    EXPECT_NE(tokens.last_query().find("service=platform-test-registry"), std::string::npos);

    oci::RegistryClient fresh;  // no cached token: resolve answers the challenge itself
    const int before = tokens.issued();
    EXPECT_EQ(fresh.resolve(ref).digest, pushed);
    EXPECT_EQ(tokens.issued(), before + 1);
    EXPECT_NE(tokens.last_query().find("scope=repository%3Aprivate%2Fapp%3Apull"), std::string::npos);
    registry.stop();
  }
}

}  // namespace
}  // namespace platform
