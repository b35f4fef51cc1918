#include "engine/secrets/secrets.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "engine/crypto.h"
#include "engine/error.h"
#include "engine/names.h"

namespace platform::secrets {
namespace {
constexpr std::string_view kKeyHeader = "platform-secrets-key 1";
constexpr std::size_t kNonceBytes = 12, kTagBytes = 16, kKeyBytes = 32;

PlatformError key_error(const std::string& path, const std::string& what) {
  return PlatformError(ErrorCode::internal, "secrets key file " + path + ": " + what,
                       "platformd dev creates it on first run; for platformd serve pass --secrets-key FILE "
                       "(mode 0600).");
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherCtx new_ctx() {
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  if (!ctx) throw PlatformError(ErrorCode::internal, "cannot allocate a cipher context");
  return ctx;
}

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

}  // namespace

Key create_key_file(const std::string& path) {
  Key k{"key_" + random_secret(8), random_bytes(kKeyBytes)};
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw key_error(path, std::string("cannot create: ") + std::strerror(errno));
  auto text = std::string(kKeyHeader) + "\n" + k.id + " " + base64_encode(k.bytes) + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) throw key_error(path, "cannot write");
  return k;
}

Key load_key_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw key_error(path, std::string("cannot read: ") + std::strerror(errno));
  if ((st.st_mode & 077) != 0)
    throw key_error(path, "group or others can read it (mode " + std::to_string(st.st_mode & 0777) +
                              " in octal is not 600); run chmod 600 " + path);
  std::ifstream in(path);
  std::string header, id, b64;
  std::getline(in, header);
  in >> id >> b64;
  auto raw = base64_decode(b64);
  if (header != kKeyHeader || id.rfind("key_", 0) != 0 || !raw || raw->size() != kKeyBytes)
    throw key_error(path, "not a platform secrets key file (expected \"" + std::string(kKeyHeader) +
                              "\", then a key id and 32 base64 bytes)");
  return {id, *raw};
}

Sealed seal(const Key& key, std::string_view plaintext, std::string_view context) {
  auto nonce = random_bytes(kNonceBytes);
  auto ctx = new_ctx();
  std::string out(plaintext.size() + kTagBytes, '\0');
  int len = 0, total = 0;
  bool ok = EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key.bytes), bytes(nonce)) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(context), static_cast<int>(context.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), bytes(out), &len, bytes(plaintext), static_cast<int>(plaintext.size())) == 1;
  total = len;
  ok = ok && EVP_EncryptFinal_ex(ctx.get(), bytes(out) + total, &len) == 1;
  total += len;
  ok = ok && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, bytes(out) + total) == 1;
  if (!ok || static_cast<std::size_t>(total) != plaintext.size())
    throw PlatformError(ErrorCode::internal, "AES-256-GCM encryption failed");
  return {key.id, base64_encode(nonce), base64_encode(out)};
}

std::string open(const std::vector<Key>& keys, const Sealed& sealed, std::string_view context) {
  const Key* key = nullptr;
  for (const auto& k : keys)
    if (k.id == sealed.key_id) key = &k;
  if (!key)
    throw PlatformError(ErrorCode::internal, "secret sealed with key " + sealed.key_id + ", which is not loaded",
                        "Start platformd with the key file that holds " + sealed.key_id + ".");
  auto nonce = base64_decode(sealed.nonce);
  auto data = base64_decode(sealed.ciphertext);
  if (!nonce || nonce->size() != kNonceBytes || !data || data->size() < kTagBytes)
    throw PlatformError(ErrorCode::internal, "a sealed secret is malformed");
  auto n = data->size() - kTagBytes;
  std::string out(n, '\0');
  std::string tag = data->substr(n);
  auto ctx = new_ctx();
  int len = 0;
  bool ok = EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key->bytes), bytes(*nonce)) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes(context), static_cast<int>(context.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), bytes(out), &len, bytes(std::string_view(*data).substr(0, n)),
                              static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, bytes(tag)) == 1;
  int final_len = 0;
  ok = ok && EVP_DecryptFinal_ex(ctx.get(), bytes(out) + len, &final_len) == 1;
  if (!ok)
    throw PlatformError(ErrorCode::internal, "a sealed secret failed authentication (wrong key, or tampered with)");
  return out;
}

std::string digest(const Key& key, std::string_view plaintext) {
  // A sub-key, so the digest never uses the encryption key directly.
  auto sub = hmac_sha256_hex(key.bytes, "platform secrets digest v1");
  return "hmac-sha256:" + hmac_sha256_hex(sub, plaintext).substr(0, 16);
}

std::string encode_file(const std::map<std::string, std::string>& values) {
  std::string out = "platform-secrets 1\n";
  for (const auto& [name, value] : values) {
    if (!valid_var_name(name))
      throw PlatformError(ErrorCode::invalid_request, "invalid secret name \"" + name.substr(0, 80) + "\"",
                          std::string(kVarNameRule));
    out += name + " " + std::to_string(value.size()) + "\n" + value + "\n";
  }
  return out;
}

std::map<std::string, std::string> decode_file(std::string_view file) {
  auto fail = [](std::size_t at, const std::string& what) {
    return PlatformError(ErrorCode::invalid_request,
                         "secrets file: " + what + " at byte " + std::to_string(at),
                         "The format is described in docs/secrets.md.");
  };
  constexpr std::string_view kHeader = "platform-secrets 1\n";
  if (file.substr(0, kHeader.size()) != kHeader) throw fail(0, "missing the \"platform-secrets 1\" header");
  std::map<std::string, std::string> out;
  std::size_t pos = kHeader.size();
  std::string last;
  while (pos < file.size()) {
    auto nl = file.find('\n', pos);
    if (nl == std::string_view::npos) throw fail(pos, "an entry header without a newline");
    auto line = file.substr(pos, nl - pos);
    auto sp = line.find(' ');
    if (sp == std::string_view::npos) throw fail(pos, "an entry header without a length");
    std::string name(line.substr(0, sp));
    auto len_text = line.substr(sp + 1);
    std::size_t len = 0;
    auto [p, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
    if (!valid_var_name(name)) throw fail(pos, "an invalid name");
    if (ec != std::errc{} || p != len_text.data() + len_text.size() || len_text.empty() ||
        (len_text.size() > 1 && len_text[0] == '0'))
      throw fail(pos + sp + 1, "a length that is not a decimal number (without leading zeros)");
    if (!last.empty() && name <= last) throw fail(pos, "names out of order or repeated");
    auto start = nl + 1;
    if (len > file.size() - start || start + len >= file.size() || file[start + len] != '\n')
      throw fail(start, "a value shorter than its length, or not followed by a newline");
    out.emplace(name, std::string(file.substr(start, len)));
    last = name;
    pos = start + len + 1;
  }
  return out;
}

}  // namespace platform::secrets
