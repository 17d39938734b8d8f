// Shared pieces of the libfabric binding: fi_info hints for connection-oriented endpoints,
// error formatting, and a libuv poll watcher over a libfabric wait fd. Everything here runs on
// the JS thread; nothing blocks and nothing is called from another thread.
#pragma once

#include <napi.h>
#include <uv.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tandem {

constexpr uint32_t kFabricVersion = FI_VERSION(1, 5);
// Bounds on what JS may ask for; the TypeScript side validates first, these keep the addon safe
// even when called wrongly.
constexpr uint32_t kBufferBytesMin = 1024;
constexpr uint32_t kBufferBytesMax = 4 * 1024 * 1024;
constexpr uint32_t kBufferCountMax = 4096;
constexpr size_t kConnDataMax = 256;
constexpr size_t kPendingConnReqMax = 64;
constexpr uint32_t kRecvPollUsMax = 1000000;
// Idle poll interval of a connection in manual progress (see Connection::manual_).
constexpr uint64_t kManualPollMs = 1;

std::string FiError(const char *what, int rc);

// A fabric shared by a listener and the connections it accepted: some providers (sockets) tie
// an accepted endpoint to the listener's fabric, so it must outlive all of them.
using SharedFabric = std::shared_ptr<fid_fabric>;
int OpenFabric(fi_fabric_attr *attr, SharedFabric *out);

// Builds hints for FI_EP_MSG with FI_MSG|FI_RMA. provider may be empty (FI_PROVIDER decides).
fi_info *MsgHints(const std::string &provider);

// Runs fi_getinfo for node:service; source=true resolves a local address to listen on.
int GetInfo(const std::string &provider, const std::string &node, const std::string &service,
            bool source, fi_info **out);

// Watches one libfabric wait fd with uv_poll. The handle is heap-allocated and freed in its
// close callback, so the owner may go away before libuv has finished closing it.
class FdWatcher {
 public:
  using Callback = std::function<void()>;
  FdWatcher() = default;
  FdWatcher(const FdWatcher &) = delete;
  FdWatcher &operator=(const FdWatcher &) = delete;
  ~FdWatcher() { Stop(); }
  int Start(uv_loop_t *loop, int fd, Callback cb);
  void Stop();
  bool active() const { return handle_ != nullptr; }

  struct Handle {
    uv_poll_t poll;
    FdWatcher *owner;
    int fd;  // our duplicate of the provider's wait fd, closed with the handle
  };

 private:
  static void OnPoll(uv_poll_t *h, int status, int events);
  Handle *handle_ = nullptr;
  Callback cb_;
};

// Runs a callback on the next loop iteration (a 0 ms uv timer): used when a queue is still busy
// after a bounded drain, so other handles (timers, other connections) get their turn.
class Kicker {
 public:
  using Callback = std::function<void()>;
  Kicker() = default;
  Kicker(const Kicker &) = delete;
  Kicker &operator=(const Kicker &) = delete;
  ~Kicker() { Stop(); }
  int Start(uv_loop_t *loop, Callback cb);
  // Runs the callback after delayMs (0: next loop iteration). A pending run is kept, except
  // that a request for the next iteration brings a later one forward.
  void Kick(uint64_t delayMs = 0);
  void Stop();

  struct Handle {
    uv_timer_t timer;
    Kicker *owner;
  };

 private:
  Handle *handle_ = nullptr;
  Callback cb_;
};

// Reads the wait fd of a CQ or EQ opened with FI_WAIT_FD.
int GetWaitFd(fid_t fid, int *fd);

// Calls a JS callback from a libuv callback (no JS frame below us): runs it with an async
// context so microtasks drain, and reports a throwing callback as an uncaught exception instead
// of leaving it pending.
void CallJs(Napi::Env env, Napi::FunctionReference &fn, napi_async_context ctx,
            const std::initializer_list<napi_value> &args);

// Reads an optional non-negative integer property; returns false (and throws) when invalid.
bool ReadUint(Napi::Env env, Napi::Object o, const char *key, uint32_t lo, uint32_t hi,
              uint32_t dflt, uint32_t *out);
bool ReadString(Napi::Env env, Napi::Object o, const char *key, std::string *out, bool required);

}  // namespace tandem
