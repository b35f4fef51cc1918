// The PROXY v2 header: exact bytes for TCP over IPv4 with the AUTHORITY TLV, IPv6, a mapped IPv4
// client, LOCAL; and the parser's answers on prefixes and garbage.
#include "ingress/proxy_v2.h"

#include <gtest/gtest.h>

#include <vector>

namespace platform::ingress {
namespace {

using Bytes = std::vector<std::uint8_t>;

ProxyHeader header(const std::string& src, std::uint16_t sport, const std::string& dst, std::uint16_t dport,
                   const std::string& authority = "") {
  ProxyHeader h;
  h.source = *SocketAddress::parse(src, sport);
  h.destination = *SocketAddress::parse(dst, dport);
  h.authority = authority;
  return h;
}

TEST(ProxyV2, TcpOverIpv4WithTheAuthorityIsExactlyTheSpecsBytes) {
  const auto b = encode_proxy_v2(header("192.0.2.10", 51000, "198.51.100.1", 443, "a.io"));
  const Bytes expected = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
                          0x21, 0x11, 0x00, 0x13,                                                  // v2 PROXY, TCP4, 19
                          192,  0,    2,    10,   198,  51,   100,  1,                             // addresses
                          0xC7, 0x38, 0x01, 0xBB,                                                  // 51000, 443
                          0x02, 0x00, 0x04, 'a',  '.',  'i',  'o'};                                // AUTHORITY
  EXPECT_EQ(b, expected);
  auto p = parse_proxy_v2(b);
  ASSERT_EQ(p.status, ProxyParse::Status::ok) << p.error;
  EXPECT_EQ(p.length, b.size());
  EXPECT_EQ(p.header.source.address(), "192.0.2.10");
  EXPECT_EQ(p.header.source.port, 51000);
  EXPECT_EQ(p.header.destination.address(), "198.51.100.1");
  EXPECT_EQ(p.header.authority, "a.io");
}

TEST(ProxyV2, Ipv6AndAMappedIpv4Client) {
  auto b = encode_proxy_v2(header("2001:db8::7", 40000, "2001:db8::1", 7000));
  ASSERT_EQ(b.size(), 16u + 36u);
  EXPECT_EQ(b[13], 0x21);
  auto p = parse_proxy_v2(b);
  ASSERT_EQ(p.status, ProxyParse::Status::ok);
  EXPECT_EQ(p.header.source.address(), "2001:db8::7");
  EXPECT_EQ(p.header.destination.port, 7000);
  // An IPv4 client of an IPv6 address: both as IPv6, the client mapped.
  b = encode_proxy_v2(header("192.0.2.10", 1, "2001:db8::1", 2));
  p = parse_proxy_v2(b);
  ASSERT_EQ(p.status, ProxyParse::Status::ok);
  EXPECT_EQ(p.header.source.address(), "::ffff:192.0.2.10");
}

TEST(ProxyV2, LocalPrefixesAndGarbage) {
  ProxyHeader local;
  local.local = true;
  const auto b = encode_proxy_v2(local);
  EXPECT_EQ(b.size(), 16u);
  auto p = parse_proxy_v2(b);
  ASSERT_EQ(p.status, ProxyParse::Status::ok);
  EXPECT_TRUE(p.header.local);
  const auto full = encode_proxy_v2(header("192.0.2.10", 1, "198.51.100.1", 2, "x.example"));
  for (std::size_t n = 0; n < full.size(); ++n)
    EXPECT_EQ(parse_proxy_v2(std::span(full).first(n)).status, ProxyParse::Status::need_more) << n;
  const Bytes http = {'G', 'E', 'T', ' '};
  EXPECT_EQ(parse_proxy_v2(http).status, ProxyParse::Status::invalid);
  auto bad = full;
  bad[13] = 0x31;  // AF_UNIX
  EXPECT_EQ(parse_proxy_v2(bad).status, ProxyParse::Status::invalid);
  bad = full;
  bad[full.size() - 10] = 0xff;  // the TLV's length runs past the header
  EXPECT_EQ(parse_proxy_v2(bad).status, ProxyParse::Status::invalid);
}

}  // namespace
}  // namespace platform::ingress
