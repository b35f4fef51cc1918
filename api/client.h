#pragma once
// A small blocking HTTP/1.1 client for the platform API (the CLI, the agent and the edge).
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "engine/crypto.h"
#include "engine/error.h"
#include "engine/json.h"

namespace platform::api {

struct ClientResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
  std::vector<std::string> warnings;           // the texts of its Warning headers
};

struct IdleConnections;  // client.cpp

// The program named in every request's User-Agent ("platform-agent/0.1.0 (3f1c2a9b7d0e)"); each main
// sets it once before its first request. "platform" when unset.
void set_client_program(const std::string& program);

// The texts of a Warning header's value: one or more `code agent "text" ["date"]`, separated by
// commas (api/warnings.h writes them). What does not parse is left out.
std::vector<std::string> parse_warning_header(const std::string& value);

class Client {
 public:
  Client(std::string base_url, std::string token);

  // One request, all of it (resolve, connect, write, read) within `timeout`: PlatformError(timed_out)
  // after that, also when the server accepted and went silent (a dead peer sends no reset).
  // PlatformError(unavailable) when the server cannot be reached.
  //
  // Connections are kept alive: a request takes one that an earlier request left (a client and its
  // copies share them; safe from any thread), or opens one. A kept connection is used again only while
  // it is younger than the server closes idle ones and shows no sign of being closed; should it fail
  // all the same before any answer arrived, a request that is safe to repeat (GET, HEAD, PUT, DELETE,
  // or one with an Idempotency-Key) is sent once more on a fresh connection, any other fails as it would
  // have.
  ClientResponse request(const std::string& method, const std::string& target, const std::string& body = {},
                         const std::map<std::string, std::string>& headers = {},
                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  // JSON in, JSON out; a problem+json answer becomes PlatformError with its code, message and hint
  // (the request id is appended to the hint).
  Json call(const std::string& method, const std::string& target, const std::optional<Json>& body = std::nullopt,
            const std::string& idempotency_key = {}, std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  Json call(const std::string& method, const std::string& target, const std::optional<Json>& body,
            const std::map<std::string, std::string>& headers,
            std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

  const std::string& base_url() const { return base_url_; }

  // Asked about ten times a second while a request runs; when it answers true the request is abandoned
  // with PlatformError(interrupted) (the CLI passes its Ctrl-C flag, so a long poll ends at once).
  void set_interrupt(std::function<bool()> check) { interrupt_ = std::move(check); }

  // Called with each warning an answer carries (its Warning headers), from the requesting thread.
  void set_warning_sink(std::function<void(const std::string&)> sink) { warn_ = std::move(sink); }

 private:
  std::string base_url_, host_, port_, token_;
  std::function<bool()> interrupt_;
  std::function<void(const std::string&)> warn_;
  std::shared_ptr<IdleConnections> idle_;
};

using ::platform::url_encode;  // engine/crypto.h

}  // namespace platform::api
