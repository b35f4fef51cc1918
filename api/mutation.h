#pragma once
// Every mutation goes through run_mutation: Idempotency-Key replay, one transaction for the command and
// the key, an operation id on every event, a receipt, and a short wait for the projections.
#include <pqxx/pqxx>

#include <functional>
#include <string>

#include "api/auth.h"
#include "api/context.h"
#include "api/http.h"
#include "api/resources.h"

namespace platform::api {

struct CommandReceipt {
  Json receipt;  // resource, desired, diff, events, next: run_mutation adds operation_id, status, request_id
  events::Cursor last;
  bool duplicate = false;
};

using Command = std::function<CommandReceipt(pqxx::work& tx, const Actor& actor)>;

// `fingerprint` identifies the request for Idempotency-Key replays; by default a SHA-256 of method, path
// and body. A request that carries secrets passes a keyed one, so the stored hash is no guessing oracle.
Response run_mutation(Context& ctx, const Request& request, const Principal& principal,
                      const std::string& operation_kind, int success_status, const Command& command,
                      const std::string& fingerprint = {});

// Names of projections that have not folded up to `cursor` yet (all of them if none ever ran).
std::vector<std::string> pending_projections(pqxx::transaction_base& tx, events::Cursor cursor);

}  // namespace platform::api
