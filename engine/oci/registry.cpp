#include "engine/oci/registry.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/crypto.h"
#include "engine/error.h"
#include "engine/oci/transport.h"

namespace platform::oci {
namespace {

constexpr std::size_t kManifestLimit = 4 * 1024 * 1024;  // the distribution spec's suggested manifest cap
constexpr int kMaxRedirects = 5;

// `Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"`
std::map<std::string, std::string> challenge_params(const std::string& header, std::string& scheme) {
  std::map<std::string, std::string> out;
  auto sp = header.find(' ');
  scheme = header.substr(0, sp);
  for (auto& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (sp == std::string::npos) return out;
  std::size_t i = sp + 1;
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    auto eq = header.find('=', i);
    if (eq == std::string::npos) break;
    std::string key = header.substr(i, eq - i);
    std::string value;
    i = eq + 1;
    if (i < header.size() && header[i] == '"') {
      for (++i; i < header.size() && header[i] != '"'; ++i) {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value.push_back(header[i]);
      }
      ++i;
    } else {
      auto end = header.find(',', i);
      value = header.substr(i, end == std::string::npos ? std::string::npos : end - i);
      i = end == std::string::npos ? header.size() : end;
    }
    for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out[key] = value;
  }
  return out;
}

Url base_url(const ImageRef& ref) {
  Url u;
  u.tls = !ref.loopback();
  std::string host = ref.api_host();
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    u.host = host.substr(1, close - 1);
    u.port = close + 2 < host.size() ? host.substr(close + 2) : "";
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    u.host = host.substr(0, colon);
    u.port = host.substr(colon + 1);
  } else {
    u.host = host;
  }
  if (u.port.empty()) u.port = u.tls ? "443" : "80";
  return u;
}

bool is_index(const std::string& t) { return t == kOciIndex || t == kDockerList; }
bool is_manifest(const std::string& t) { return t == kOciManifest || t == kDockerManifest; }

std::string media_type_of(const HttpResult& r, const Json& doc) {
  auto t = doc.value("mediaType", std::string());
  if (t.empty()) {
    auto it = r.headers.find("content-type");
    if (it != r.headers.end()) t = it->second.substr(0, it->second.find(';'));
  }
  if (t.empty() && doc.contains("manifests")) t = kOciIndex;  // OCI allows omitting mediaType
  if (t.empty() && doc.contains("config")) t = kOciManifest;
  return t;
}

}  // namespace

std::string sha256_digest(const std::string& bytes) { return "sha256:" + sha256_hex(bytes); }

Json ResolvedImage::to_json() const {
  Json j = {{"ref", ref.str()},           {"registry", ref.registry}, {"repository", ref.repository},
            {"tag", ref.tag},             {"digest", digest},         {"media_type", media_type},
            {"config_digest", config_digest}, {"size", size}};
  if (!index_digest.empty()) j["index_digest"] = index_digest;
  return j;
}

RegistryClient::RegistryClient(RegistryOptions options) : options_(std::move(options)) {}

std::string RegistryClient::token_for(const ImageRef& ref, const std::string& challenge) {
  std::string scheme;
  auto params = challenge_params(challenge, scheme);
  if (scheme == "basic")
    throw PlatformError(ErrorCode::unauthenticated,
                        "the registry " + ref.registry + " wants a user name and password for " + ref.repository,
                        "v1 pulls public images and images in registries that grant anonymous tokens; push the "
                        "image to such a registry (platformd dev runs one) and deploy it from there.");
  if (scheme != "bearer" || params["realm"].empty())
    throw PlatformError(ErrorCode::unavailable,
                        "the registry " + ref.registry + " sent an auth challenge the platform cannot answer: " +
                            challenge.substr(0, 200),
                        "The registry should answer with `WWW-Authenticate: Bearer realm=...`.");
  auto url = parse_url(params["realm"]);
  url.target += url.target.find('?') == std::string::npos ? "?" : "&";
  if (!params["service"].empty()) url.target += "service=" + url_encode(params["service"]) + "&";
  url.target += "scope=" +
                url_encode(params["scope"].empty() ? "repository:" + ref.repository + ":pull" : params["scope"]);
  auto r = exchange(url, "GET", {{"Accept", "application/json"}}, {}, options_.timeout, 1024 * 1024);
  if (r.status == 401 || r.status == 403)
    throw PlatformError(ErrorCode::unauthenticated,
                        fmt::format("the registry {} refused an anonymous token for {} (HTTP {})", ref.registry,
                                    ref.repository, r.status),
                        "The repository is private or does not exist; v1 deploys images that can be pulled "
                        "anonymously.");
  if (r.status != 200)
    throw PlatformError(ErrorCode::unavailable,
                        fmt::format("the token service of {} answered HTTP {}", ref.registry, r.status),
                        "Retry later; check the registry's status.");
  Json doc = Json::parse(r.body, nullptr, false);
  std::string token;
  if (doc.is_object()) token = doc.value("token", doc.value("access_token", std::string()));
  if (token.empty())
    throw PlatformError(ErrorCode::unavailable, "the token service of " + ref.registry + " sent no token",
                        "Retry later; check the registry's status.");
  return token;
}

HttpResult RegistryClient::request(const ImageRef& ref, const std::string& method, const std::string& path,
                                   const std::map<std::string, std::string>& headers, const std::string& body,
                                   const BodySink* sink) {
  Url url = base_url(ref);
  url.target = path;
  const std::string token_key = ref.registry + "/" + ref.repository;
  bool answered_challenge = false;
  for (int hop = 0;; ++hop) {
    auto h = headers;
    auto token = tokens_.find(token_key);
    // Credentials go to the registry itself, never to a host it redirects to (blob storage).
    if (token != tokens_.end() && hop == 0) h["Authorization"] = "Bearer " + token->second;
    auto r = exchange(url, method, h, body, options_.timeout, kManifestLimit, sink);
    if (r.status == 401 && hop == 0 && !answered_challenge) {
      answered_challenge = true;
      tokens_[token_key] = token_for(ref, r.headers["www-authenticate"]);
      --hop;
      continue;
    }
    if ((r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 || r.status == 308) &&
        r.headers.count("location")) {
      if (hop >= kMaxRedirects)
        throw PlatformError(ErrorCode::unavailable, "the registry " + ref.registry + " redirected too many times",
                            "Check the registry's configuration.");
      const auto& loc = r.headers["location"];
      if (loc.rfind("/", 0) == 0) {
        url.target = loc;
      } else {
        url = parse_url(loc);
      }
      continue;
    }
    return r;
  }
}

HttpResult RegistryClient::fetch_manifest(const ImageRef& ref, const std::string& reference) {
  const std::string accept = std::string(kOciIndex) + ", " + kDockerList + ", " + kOciManifest + ", " + kDockerManifest;
  auto r = request(ref, "GET", "/v2/" + ref.repository + "/manifests/" + reference, {{"Accept", accept}});
  if (r.status == 404) {
    Json doc = Json::parse(r.body, nullptr, false);
    std::string code;
    if (doc.is_object() && doc.contains("errors") && doc["errors"].is_array() && !doc["errors"].empty())
      code = doc["errors"][0].value("code", "");
    if (code == "NAME_UNKNOWN")
      throw PlatformError(ErrorCode::not_found,
                          "the repository " + ref.repository + " does not exist in the registry " + ref.registry,
                          "Check the name, or push the image first (e.g. scripts/sample-image).");
    throw PlatformError(ErrorCode::not_found,
                        (valid_digest(reference) ? "the manifest " : "the tag ") + reference + " of " +
                            ref.registry + "/" + ref.repository + " does not exist",
                        "Check the tag (list them: curl http" + std::string(ref.loopback() ? "" : "s") + "://" +
                            ref.registry + "/v2/" + ref.repository + "/tags/list), or push it first.");
  }
  if (r.status == 401 || r.status == 403)
    throw PlatformError(ErrorCode::unauthenticated,
                        fmt::format("the registry {} refused access to {} (HTTP {})", ref.registry, ref.repository,
                                    r.status),
                        "v1 deploys images that can be pulled anonymously.");
  if (r.status != 200)
    throw PlatformError(ErrorCode::unavailable,
                        fmt::format("the registry {} answered HTTP {} for {}:{}", ref.registry, r.status,
                                    ref.repository, reference),
                        "Retry later; check the registry's status and logs.");
  // Every byte is checked: against the digest asked for, and against the digest the registry claims.
  const auto actual = sha256_digest(r.body);
  if (valid_digest(reference) && actual != reference)
    throw PlatformError(ErrorCode::unavailable,
                        "the registry " + ref.registry + " sent a manifest whose sha256 is " + actual + ", not " +
                            reference,
                        "The registry or something between it and the platform altered the content; do not "
                        "deploy from it until that is understood.");
  if (auto claimed = r.headers.find("docker-content-digest");
      claimed != r.headers.end() && claimed->second.rfind("sha256:", 0) == 0 && claimed->second != actual)
    throw PlatformError(ErrorCode::unavailable,
                        "the registry " + ref.registry + " says the manifest is " + claimed->second +
                            " but its bytes hash to " + actual,
                        "The registry or something between it and the platform altered the content.");
  return r;
}

std::string RegistryClient::manifest(const ImageRef& ref, const std::string& digest) {
  if (!valid_digest(digest))
    throw PlatformError(ErrorCode::invalid_request, "\"" + digest.substr(0, 80) + "\" is not a sha256 digest",
                        "Digests are sha256: followed by 64 lowercase hex digits.");
  return fetch_manifest(ref, digest).body;
}

void RegistryClient::fetch_blob(const ImageRef& ref, const std::string& digest, std::int64_t size,
                                const std::string& path) {
  if (!valid_digest(digest))
    throw PlatformError(ErrorCode::unavailable, "the manifest of " + ref.str() + " names an invalid blob digest",
                        "Re-push the image.");
  const std::string part = path + ".part";
  std::FILE* f = std::fopen(part.c_str(), "wb");
  if (!f) throw PlatformError(ErrorCode::internal, "cannot write " + part + ": " + std::strerror(errno));
  Sha256 hash;
  std::int64_t bytes = 0;
  bool write_failed = false;
  BodySink sink = [&](std::string_view piece) {
    hash.update(piece);
    bytes += static_cast<std::int64_t>(piece.size());
    if (size >= 0 && bytes > size) throw PlatformError(ErrorCode::unavailable, "too long");
    if (std::fwrite(piece.data(), 1, piece.size(), f) != piece.size()) write_failed = true;
  };
  HttpResult r;
  try {
    r = request(ref, "GET", "/v2/" + ref.repository + "/blobs/" + digest, {}, {}, &sink);
  } catch (...) {
    std::fclose(f);
    std::remove(part.c_str());
    if (size >= 0 && bytes > size)
      throw PlatformError(ErrorCode::unavailable,
                          fmt::format("the registry {} sent more than the {} bytes of blob {}", ref.registry, size, digest),
                          "The registry or something between it and the platform altered the content.");
    throw;
  }
  const bool closed = std::fclose(f) == 0;
  auto fail = [&](ErrorCode code, const std::string& message, const std::string& hint) {
    std::remove(part.c_str());
    throw PlatformError(code, message, hint);
  };
  if (r.status == 404)
    fail(ErrorCode::not_found, "the registry " + ref.registry + " has no blob " + digest + " in " + ref.repository,
         "Re-push the image: its manifest names a layer the registry does not hold.");
  if (r.status != 200)
    fail(ErrorCode::unavailable, fmt::format("the registry {} answered HTTP {} for blob {}", ref.registry, r.status, digest),
         "Retry later; check the registry's status and logs.");
  if (write_failed || !closed)
    fail(ErrorCode::internal, "cannot write " + part + " (disk full?)", "Free space in the agent's state folder.");
  const auto actual = "sha256:" + hash.hex();
  if (actual != digest || (size >= 0 && bytes != size))
    fail(ErrorCode::unavailable,
         fmt::format("blob {} from {} has sha256 {} and {} bytes (expected {} bytes)", digest, ref.registry, actual,
                     bytes, size),
         "The registry or something between it and the platform altered the content; nothing was used.");
  if (std::rename(part.c_str(), path.c_str()) != 0)
    fail(ErrorCode::internal, "cannot rename " + part + ": " + std::strerror(errno), "");
}

ResolvedImage RegistryClient::resolve(const ImageRef& ref) {
  ResolvedImage out;
  out.ref = ref;
  auto r = fetch_manifest(ref, ref.digest.empty() ? ref.tag : ref.digest);
  Json doc = Json::parse(r.body, nullptr, false);
  if (!doc.is_object())
    throw PlatformError(ErrorCode::unavailable, "the registry " + ref.registry + " sent a manifest that is not JSON",
                        "Check the image with skopeo inspect.");
  auto type = media_type_of(r, doc);
  if (is_index(type)) {
    out.index_digest = sha256_digest(r.body);
    std::string chosen, seen;
    for (const auto& m : doc.value("manifests", Json::array())) {
      if (!m.is_object() || !m.contains("platform") || !m["platform"].is_object()) continue;
      auto os = m["platform"].value("os", ""), arch = m["platform"].value("architecture", "");
      if (os == "unknown") continue;  // attestations
      seen += (seen.empty() ? "" : ", ") + os + "/" + arch;
      if (os == options_.os && arch == options_.architecture && chosen.empty()) chosen = m.value("digest", "");
    }
    if (chosen.empty())
      throw PlatformError(ErrorCode::not_found,
                          fmt::format("{} has no {}/{} image (it has: {})", ref.str(), options_.os,
                                      options_.architecture, seen.empty() ? "none" : seen),
                          fmt::format("Build and push a {}/{} image.", options_.os, options_.architecture));
    if (!valid_digest(chosen))
      throw PlatformError(ErrorCode::unavailable, "the index of " + ref.str() + " names an invalid digest",
                          "Re-push the image.");
    r = fetch_manifest(ref, chosen);
    doc = Json::parse(r.body, nullptr, false);
    if (!doc.is_object())
      throw PlatformError(ErrorCode::unavailable, "the registry sent a manifest that is not JSON",
                          "Re-push the image.");
    type = media_type_of(r, doc);
  }
  if (!is_manifest(type))
    throw PlatformError(ErrorCode::not_supported,
                        "the image " + ref.str() + " has a manifest of type \"" + type + "\", which v1 does not run",
                        "Re-push it with a current tool (docker push, skopeo copy): v1 runs OCI and Docker v2 "
                        "schema 2 images.");
  out.digest = sha256_digest(r.body);
  out.media_type = type;
  out.size = static_cast<std::int64_t>(r.body.size());
  if (doc.contains("config") && doc["config"].is_object()) {
    out.config_digest = doc["config"].value("digest", "");
    out.size += doc["config"].value("size", std::int64_t{0});
  }
  for (const auto& l : doc.value("layers", Json::array()))
    if (l.is_object()) out.size += l.value("size", std::int64_t{0});
  if (!valid_digest(out.config_digest))
    throw PlatformError(ErrorCode::unavailable, "the manifest of " + ref.str() + " has no valid config digest",
                        "Re-push the image.");
  return out;
}

}  // namespace platform::oci
