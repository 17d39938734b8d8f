// One FI_EP_MSG connection: its own fabric, domain, event queue, send and receive completion
// queues, a pre-registered pool of receive and bounce buffers and a small cache of on-the-fly
// registrations for zero-copy sends. Invariants: every Buffer a posted send points into stays
// referenced until that send's completion (or until the endpoint is closed); fabric resources
// are released only when no JS callback of ours is on the stack.
#pragma once

#include "common.h"

#include <memory>
#include <vector>

namespace tandem {

struct AddonData {
  Napi::FunctionReference connection;
  Napi::FunctionReference listener;
};

class Connection : public Napi::ObjectWrap<Connection> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Connection(const Napi::CallbackInfo &info);
  ~Connection() override;

  // Active side: resolves host:port and calls fi_connect with connData.
  static Napi::Value Connect(const Napi::CallbackInfo &info);
  // Passive side: takes ownership of `req` (a FI_CONNREQ's info) and calls fi_accept.
  static Napi::Value Accept(Napi::Env env, fi_info *req, SharedFabric fabric, Napi::Object opts,
                            Napi::Value data, Napi::Function onEvent);

 private:
  enum class State { Idle, Connecting, Connected, Closed };

  struct RecvSlot {
    fi_context ctx;  // first member: completions hand us &ctx
    uint32_t index;
  };
  struct CachedMr {
    uint8_t *base = nullptr;
    size_t length = 0;
    fid_mr *mr = nullptr;
    Napi::Reference<Napi::Value> ref;
    uint32_t inflight = 0;
    uint64_t lastUse = 0;
    bool transient = false;  // not kept in the cache: deregistered at its last completion
  };
  struct SendSlot {
    fi_context ctx;  // first member
    uint32_t index;
    bool busy = false;
    double token = 0;
    CachedMr *zc = nullptr;
  };

  bool Setup(Napi::Env env, fi_info *info, SharedFabric fabric, Napi::Object opts,
             Napi::Function onEvent);
  bool Fail(Napi::Env env, const std::string &msg);
  bool PostRecv(RecvSlot *slot);

  Napi::Value Send(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info);
  Napi::Value Stats(const Napi::CallbackInfo &info);
  Napi::Value GetMaxConnData(const Napi::CallbackInfo &info);
  Napi::Value GetBufferBytes(const Napi::CallbackInfo &info);
  Napi::Value GetProvider(const Napi::CallbackInfo &info);

  void OnEq();
  void OnTx();
  void OnRx();
  // Reads completions until the queue is empty; returns how many were handled.
  int DrainCq(fid_cq *cq, bool tx);
  void HandleTx(fi_cq_msg_entry &e);
  void HandleRx(fi_cq_msg_entry &e);
  void HandleCqError(fid_cq *cq, bool tx);
  // Re-arms the wait fd; loops while the provider says more work arrived meanwhile.
  void Settle(fid_cq *cq, bool tx);

  CachedMr *Register(Napi::Env env, Napi::Buffer<uint8_t> buf);
  void Release(CachedMr *m);

  void Emit(const char *kind, std::initializer_list<napi_value> rest);
  void EmitError(const std::string &message, const char *code, const char *where = "queue");
  void RequestClose();
  void Teardown();
  void EnterJs() { ++depth_; }
  void LeaveJs();

  State state_ = State::Idle;
  Napi::FunctionReference onEvent_;
  napi_async_context asyncCtx_ = nullptr;
  napi_env env_ = nullptr;

  fi_info *info_ = nullptr;
  SharedFabric fabricRef_;
  fid_fabric *fabric_ = nullptr;
  fid_domain *domain_ = nullptr;
  fid_eq *eq_ = nullptr;
  fid_cq *txcq_ = nullptr;
  fid_cq *rxcq_ = nullptr;
  fid_ep *ep_ = nullptr;
  bool mrLocal_ = false;
  size_t iovLimit_ = 1;
  size_t maxConnData_ = 0;

  uint32_t bufferBytes_ = 0;
  uint32_t recvCount_ = 0;
  uint32_t sendCount_ = 0;
  uint32_t zcopyThreshold_ = 0;
  uint32_t recvPollUs_ = 0;
  // Manual progress: the provider runs no thread of its own; our reads of the completion
  // queues move its data, on a poll timer (kManualPollMs while idle, every loop iteration while
  // there is work) and right after each send. TypeScript asks for it (defaultProgress: the
  // sockets provider, whose progress thread in libfabric 1.17 can sleep with work pending).
  bool manual_ = false;

  uint8_t *recvRegion_ = nullptr;
  fid_mr *recvMr_ = nullptr;
  std::vector<RecvSlot> recvSlots_;
  uint8_t *sendRegion_ = nullptr;
  fid_mr *sendMr_ = nullptr;
  std::vector<SendSlot> sendSlots_;
  std::vector<uint32_t> freeSend_;
  std::vector<std::unique_ptr<CachedMr>> mrCache_;
  uint64_t useClock_ = 0;
  // Keys for on-the-fly registrations: unique within the domain, since providers without
  // FI_MR_PROV_KEY (tcp, sockets) refuse a key in use. 1 and 2 are the receive and bounce pools.
  uint64_t nextMrKey_ = 3;

  FdWatcher eqWatch_, txWatch_, rxWatch_;
  Kicker kick_;
  int depth_ = 0;
  bool teardownPending_ = false;
  bool refed_ = false;

  double zeroCopyBytes_ = 0, copiedBytes_ = 0, sentMessages_ = 0, recvMessages_ = 0,
         recvBytes_ = 0, registrations_ = 0, cacheHits_ = 0, busyPolls_ = 0, wakeups_ = 0,
         emptyWakeups_ = 0;
};

}  // namespace tandem
