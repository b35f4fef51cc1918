#include "api/mutation.h"

#include <thread>

#include "engine/crypto.h"
#include "engine/db.h"
#include "engine/ids.h"
#include "projections/projection.h"

namespace platform::api {

std::vector<std::string> pending_projections(pqxx::transaction_base& tx, events::Cursor cursor) {
  std::vector<std::string> pending;
  auto rows = tx.exec("SELECT name, tx_id::text, position FROM projection.checkpoints");
  for (const auto& name : projections::names()) {
    bool done = false;
    for (const auto& r : rows)
      if (r[0].as<std::string>() == name)
        done = events::Cursor{std::stoull(r[1].as<std::string>()), r[2].as<std::int64_t>()} >= cursor;
    if (!done) pending.push_back(name);
  }
  return pending;
}

Response run_mutation(Context& ctx, const Request& request, const Principal& principal,
                      const std::string& operation_kind, int success_status, const Command& command,
                      const std::string& fingerprint) {
  const auto key = request.header("idempotency-key");
  if (key.size() > 200)
    throw PlatformError(ErrorCode::invalid_request, "Idempotency-Key is longer than 200 characters",
                        "Use a UUID or another short unique string.");
  const auto request_hash =
      fingerprint.empty() ? sha256_hex(request.method + " " + request.path + "\n" + request.body) : fingerprint;
  Actor actor{principal.user_id, request.request_id, new_id("op"), operation_kind, principal.user_name};

  struct Outcome {
    int status;
    Json body;
    bool replayed;
    events::Cursor last;
  };
  auto outcome = ctx.pool.transact([&](pqxx::work& tx) -> Outcome {
    if (!key.empty()) {
      // Serialise requests with the same key; the second one replays the first one's response.
      tx.exec_params("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", "idem:" + principal.user_id + ":" + key);
      auto prior = tx.exec_params(
          "SELECT request_hash, http_status, response::text FROM core.idempotency_keys WHERE user_id = $1 AND key = $2",
          principal.user_id, key);
      if (!prior.empty()) {
        if (prior[0][0].as<std::string>() != request_hash)
          throw PlatformError(ErrorCode::idempotency_conflict,
                              "Idempotency-Key \"" + key + "\" was already used for a different request",
                              "Use a new key for a new request; reuse a key only to retry the same request.");
        Json stored = Json::parse(prior[0][2].as<std::string>());
        events::Cursor last;
        for (const auto& e : stored.value("events", Json::array()))
          if (auto c = events::Cursor::decode(e.value("cursor", ""))) last = std::max(last, *c);
        return {prior[0][1].as<int>(), std::move(stored), true, last};
      }
    }
    auto result = command(tx, actor);
    Json body = std::move(result.receipt);
    body["operation_id"] = actor.operation_id;
    body["kind"] = operation_kind;
    body["request_id"] = request.request_id;
    body["duplicate"] = result.duplicate;
    body["status"] = "accepted";
    if (!key.empty()) {
      body["idempotency_key"] = key;
      tx.exec_params(
          "INSERT INTO core.idempotency_keys (user_id, key, request_hash, http_status, response)"
          " VALUES ($1, $2, $3, $4, $5::jsonb)",
          principal.user_id, key, request_hash, success_status, body.dump());
    }
    return {success_status, std::move(body), false, result.last};
  });

  if (outcome.last.pos == 0) {
    outcome.body["status"] = "succeeded";  // nothing was appended, so there is nothing to fold
  } else if (request.header("prefer").find("respond-async") != std::string::npos) {
    // The caller asked not to wait (platform deploy --detach): "accepted", follow it with `platform wait`.
  } else if (outcome.last.pos > 0) {
    // Read-your-writes for scripts: give the projections a moment to fold this operation.
    auto deadline = std::chrono::steady_clock::now() + ctx.apply_wait;
    std::vector<std::string> pending;
    for (;;) {
      pending = ctx.pool.read([&](pqxx::transaction_base& tx) { return pending_projections(tx, outcome.last); });
      if (pending.empty() || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
    }
    outcome.body["status"] = pending.empty() ? "succeeded" : "accepted";
    if (!pending.empty()) outcome.body["pending"] = pending;
  }
  auto response = json_response(outcome.status, outcome.body);
  if (outcome.replayed) response.headers.emplace_back("Idempotent-Replayed", "true");
  return response;
}

}  // namespace platform::api
