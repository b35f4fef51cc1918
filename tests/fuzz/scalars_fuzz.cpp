// The small parsers behind query parameters and path segments: cursors (after=), durations (wait=,
// since=), resource IDs, error codes read back by the CLI; the delivered secrets file; image references.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/duration.h"
#include "engine/error.h"
#include "engine/event_store.h"
#include "engine/ids.h"
#include "engine/oci/image_ref.h"
#include "engine/secrets/secrets.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  if (auto c = platform::events::Cursor::decode(s)) {
    // What decodes must encode back to something that decodes to the same cursor.
    auto again = platform::events::Cursor::decode(c->encode());
    if (!again || again->tx != c->tx || again->pos != c->pos) __builtin_trap();
  }
  (void)platform::parse_duration(s);
  (void)platform::is_utc_time(s);
  std::string prefix;
  (void)platform::looks_like_id(s, &prefix);
  (void)platform::error_code_from_string(s);
  try {
    // A file that decodes is canonical: encoding what it holds gives the same bytes back.
    if (platform::secrets::encode_file(platform::secrets::decode_file(s)) != s) __builtin_trap();
  } catch (const platform::PlatformError&) {
  }
  try {
    // A reference that parses prints as one that parses to the same parts.
    auto r = platform::oci::parse_image_ref(std::string(s));
    auto again = platform::oci::parse_image_ref(r.str());
    if (again.registry != r.registry || again.repository != r.repository || again.tag != r.tag ||
        again.digest != r.digest)
      __builtin_trap();
  } catch (const platform::PlatformError&) {
  }
  return 0;
}
