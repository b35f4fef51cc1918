#pragma once
// Secrets at rest and in delivery (DESIGN.md §10, docs/secrets.md):
// - a key file holds the AES-256 key and its id; only platformd reads it (mode 0600, refused otherwise);
// - seal/open: AES-256-GCM with a fresh 96-bit nonce for every value, bound by associated data to where
//   the value belongs (env, name), so a sealed value cannot be moved to another name or env;
// - a keyed digest that identifies a value in `secrets list` without revealing it;
// - the delivered secrets file: a fixed, versioned format that round-trips any bytes.
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace platform::secrets {

struct Key {
  std::string id;     // "key_" + 16 hex digits; stored beside every sealed value so keys can rotate
  std::string bytes;  // 32 bytes
};

// Creates a new key file (mode 0600, never overwrites: throws if the file exists).
Key create_key_file(const std::string& path);
// Reads a key file; refuses one that group or others can read, or that is malformed.
Key load_key_file(const std::string& path);

struct Sealed {
  std::string key_id;
  std::string nonce;       // base64, 12 bytes
  std::string ciphertext;  // base64, ciphertext followed by the 16-byte GCM tag
};

// `context` is authenticated, not encrypted: open() must be given the same context.
Sealed seal(const Key& key, std::string_view plaintext, std::string_view context);
// Throws PlatformError(internal) when the key id is not among `keys` or the value fails authentication.
std::string open(const std::vector<Key>& keys, const Sealed& sealed, std::string_view context);

// "hmac-sha256:<first 16 hex>": equal values give equal digests under one key, and the digest says
// nothing a guesser could check without the key.
std::string digest(const Key& key, std::string_view plaintext);

// The delivered file, mounted read-only at /run/platform/secrets. Version 1:
//   platform-secrets 1\n
//   then per secret, sorted by name:  NAME SP LENGTH \n  <LENGTH bytes of value> \n
// NAME matches [A-Za-z_][A-Za-z0-9_]*; LENGTH is decimal bytes. Values are raw bytes (newlines, quotes,
// '=', NUL and UTF-8 included), so a reader needs only "read a line, read N bytes, skip one newline".
std::string encode_file(const std::map<std::string, std::string>& values);
// Throws PlatformError(invalid_request) naming the byte offset of the first problem.
std::map<std::string, std::string> decode_file(std::string_view file);

}  // namespace platform::secrets
