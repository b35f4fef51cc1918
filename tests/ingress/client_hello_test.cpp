// The ClientHello reader: the server name from a whole hello, from one split across TCP segments and
// across TLS records, from a real client (openssl s_client); and each way a hello is refused.
#include "ingress/client_hello.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace platform::ingress {
namespace {

using Bytes = std::vector<std::uint8_t>;
using Status = ClientHello::Status;

void put(Bytes& b, std::uint32_t v, int n) {
  for (int i = n - 1; i >= 0; --i) b.push_back(static_cast<std::uint8_t>((v >> (8 * i)) & 0xff));
}

// A ClientHello handshake message (header included) naming `sni` ("" for no server_name extension).
Bytes hello_message(const std::string& sni, bool extensions = true) {
  Bytes body;
  put(body, 0x0303, 2);
  body.insert(body.end(), 32, 0x42);  // random
  put(body, 32, 1);
  body.insert(body.end(), 32, 0x07);  // session id
  put(body, 4, 2);
  put(body, 0x1301, 2);
  put(body, 0x1302, 2);
  put(body, 1, 1);
  put(body, 0, 1);  // null compression
  if (extensions) {
    Bytes exts;
    put(exts, 0x002b, 2);  // supported_versions: TLS 1.3
    put(exts, 3, 2);
    put(exts, 2, 1);
    put(exts, 0x0304, 2);
    if (!sni.empty()) {
      put(exts, 0x0000, 2);
      put(exts, static_cast<std::uint32_t>(sni.size() + 5), 2);
      put(exts, static_cast<std::uint32_t>(sni.size() + 3), 2);
      put(exts, 0, 1);
      put(exts, static_cast<std::uint32_t>(sni.size()), 2);
      exts.insert(exts.end(), sni.begin(), sni.end());
    }
    put(body, static_cast<std::uint32_t>(exts.size()), 2);
    body.insert(body.end(), exts.begin(), exts.end());
  }
  Bytes msg;
  put(msg, 1, 1);
  put(msg, static_cast<std::uint32_t>(body.size()), 3);
  msg.insert(msg.end(), body.begin(), body.end());
  return msg;
}

// The message in TLS handshake records of at most `record_size` bytes each.
Bytes in_records(const Bytes& msg, std::size_t record_size) {
  Bytes out;
  for (std::size_t at = 0; at < msg.size(); at += record_size) {
    const auto n = std::min(record_size, msg.size() - at);
    put(out, 22, 1);
    put(out, 0x0301, 2);
    put(out, static_cast<std::uint32_t>(n), 2);
    out.insert(out.end(), msg.begin() + static_cast<std::ptrdiff_t>(at), msg.begin() + static_cast<std::ptrdiff_t>(at + n));
  }
  return out;
}

TEST(ClientHello, TheServerNameOfAWholeHelloLowercasedWithoutItsTrailingDot) {
  auto r = read_client_hello(in_records(hello_message("App.Example.COM."), 16384));
  ASSERT_EQ(r.status, Status::ok) << r.error;
  EXPECT_EQ(r.sni, "app.example.com");
  auto none = read_client_hello(in_records(hello_message(""), 16384));
  EXPECT_EQ(none.status, Status::ok);
  EXPECT_EQ(none.sni, "");
  EXPECT_EQ(read_client_hello(in_records(hello_message("", false), 16384)).status, Status::ok);
}

TEST(ClientHello, AHelloSplitAcrossSegmentsAndRecordsIsReadWhole) {
  const auto bytes = in_records(hello_message("api.example.net"), 7);  // many tiny records
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto partial = read_client_hello(std::span(bytes).first(n));
    ASSERT_EQ(partial.status, Status::need_more) << "after " << n << " bytes: " << partial.error;
  }
  auto r = read_client_hello(bytes);
  ASSERT_EQ(r.status, Status::ok) << r.error;
  EXPECT_EQ(r.sni, "api.example.net");
}

TEST(ClientHello, WhatIsNotAHelloIsRefusedSayingWhy) {
  const std::string http = "GET / HTTP/1.1\r\n";
  auto r = read_client_hello(std::span(reinterpret_cast<const std::uint8_t*>(http.data()), 1));
  EXPECT_EQ(r.status, Status::not_tls) << "known at the first byte";
  Bytes ssl2 = {22, 2, 0};
  EXPECT_EQ(read_client_hello(ssl2).status, Status::not_tls);
  // A ClientHello declaring 20000 bytes, against the default 16 KiB.
  Bytes big = {22, 3, 1, 0, 4, 1, 0, 0x4e, 0x20};
  auto large = read_client_hello(big);
  EXPECT_EQ(large.status, Status::too_large);
  EXPECT_EQ(large.error, "the ClientHello is 20004 bytes, more than the limit of 16384");
  // Another handshake message first (a ServerHello).
  auto msg = hello_message("a.example");
  msg[0] = 2;
  EXPECT_EQ(read_client_hello(in_records(msg, 16384)).status, Status::malformed);
  // An extension that claims more bytes than there are.
  msg = hello_message("a.example");
  msg[msg.size() - 16] = 0x7f;  // the server_name extension's length
  EXPECT_EQ(read_client_hello(in_records(msg, 16384)).status, Status::malformed);
  // A record of another type in the middle of the hello.
  auto split = in_records(hello_message("a.example"), 20);
  split[25] = 23;  // the second record's type: application data
  EXPECT_EQ(read_client_hello(split).status, Status::malformed);
  // A name with characters no host name has.
  EXPECT_EQ(read_client_hello(in_records(hello_message("bad name"), 16384)).status, Status::malformed);
  // Empty labels (the fuzzer found "a.." reading as "a."): refused.
  for (const char* name : {"a.example..", ".a.example", "a..example", "."})
    EXPECT_EQ(read_client_hello(in_records(hello_message(name), 16384)).status, Status::malformed) << name;
  // More than 64 records for one hello.
  EXPECT_EQ(read_client_hello(in_records(hello_message("a.example"), 1)).status, Status::malformed);
}

TEST(ClientHello, ARealClientsHelloNamesItsServer) {
  if (::access("/usr/bin/openssl", X_OK) != 0) GTEST_SKIP() << "needs openssl";
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len);
  ::listen(listener, 1);
  const auto port = ntohs(a.sin_port);
  std::thread client([port] {
    const auto cmd = "timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port) +
                     " -servername Shop.Example.ORG </dev/null >/dev/null 2>&1";
    (void)std::system(cmd.c_str());
  });
  int conn = ::accept(listener, nullptr, nullptr);
  Bytes got;
  ClientHello r;
  for (int i = 0; i < 100 && r.status == Status::need_more; ++i) {
    std::uint8_t buf[512];  // small reads: the hello arrives in pieces
    auto n = ::recv(conn, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.insert(got.end(), buf, buf + n);
    r = read_client_hello(got);
  }
  ::close(conn);
  ::close(listener);
  client.join();
  ASSERT_EQ(r.status, Status::ok) << r.error;
  EXPECT_EQ(r.sni, "shop.example.org");
  EXPECT_GT(r.hello_bytes, 100u);
}

TEST(ClientHello, RouteHostnames) {
  EXPECT_TRUE(valid_route_hostname("app.example.com"));
  EXPECT_TRUE(valid_route_hostname("*.example.com"));
  EXPECT_TRUE(valid_route_hostname("localhost"));
  EXPECT_FALSE(valid_route_hostname(""));
  EXPECT_FALSE(valid_route_hostname("App.example.com"));
  EXPECT_FALSE(valid_route_hostname("-a.example.com"));
  EXPECT_FALSE(valid_route_hostname("a..example.com"));
  EXPECT_FALSE(valid_route_hostname("a.example.com."));
  EXPECT_FALSE(valid_route_hostname("*"));
  EXPECT_FALSE(valid_route_hostname("a.*.example.com"));
  EXPECT_FALSE(valid_route_hostname(std::string(64, 'a') + ".com"));
}

}  // namespace
}  // namespace platform::ingress
