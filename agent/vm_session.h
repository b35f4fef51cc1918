#pragma once
// A session in a microVM (`platform exec -i/-it`): the Session the agent relays (agent/exec_requests.h)
// over the VM's control line (agent/vm_control.h). Its descriptor is one end of a socket pair; a thread
// moves the other end's bytes to the guest as "run-input" lines and the guest's "run-output" back,
// granting the guest more output window as the agent takes it, so a slow reader holds the command back.
#include <memory>
#include <string>

#include "agent/runtime.h"

namespace platform::agent {

class VmControl;

// Starts the session through `line`; throws PlatformError when it cannot.
std::unique_ptr<Session> open_vm_session(std::shared_ptr<VmControl> line, const std::vector<std::string>& argv,
                                         const std::map<std::string, std::string>& env, bool tty, int rows, int cols);

}  // namespace platform::agent
