// FI_EP_MSG connection (see connection.h). Completions are read on the JS thread when libuv
// reports the CQ's wait fd readable; with recv-poll > 0 the receive queue is busy-polled for
// that long before going back to sleep. Peer misbehaviour surfaces as an "error" event and a
// closed connection, never as a crash.
#include "connection.h"

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace tandem {

namespace {
constexpr size_t kMrCacheMax = 16;
constexpr int kSettleRounds = 64;
constexpr uint64_t kMrAccess = FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ |
                               FI_REMOTE_WRITE;

// Stable names for the errors JS tells apart (a peer that left vs. a real failure).
const char *ErrCode(int e) {
  switch (e) {
    case FI_ECONNREFUSED: return "ECONNREFUSED";
    case FI_ETIMEDOUT: return "ETIMEDOUT";
    case FI_ECONNRESET: return "ECONNRESET";
    case FI_ECONNABORTED: return "ECONNABORTED";
    case FI_ENOTCONN: return "ENOTCONN";
    case EPIPE: return "EPIPE";
    case FI_ESHUTDOWN: return "ESHUTDOWN";
    case FI_ETRUNC: return "ETRUNC";
    case FI_EHOSTUNREACH: return "EHOSTUNREACH";
    case FI_ENETUNREACH: return "ENETUNREACH";
    case FI_ENOENT: return "ENOENT";
    case FI_EIO: return "EIO";  // sockets: how a send or receive learns the peer vanished
    default: return "EFABRIC";
  }
}

uint8_t *AllocRegion(size_t bytes) {
  void *p = nullptr;
  if (posix_memalign(&p, 4096, bytes) != 0) return nullptr;
  std::memset(p, 0, bytes);
  return static_cast<uint8_t *>(p);
}
}  // namespace

Napi::Function Connection::Init(Napi::Env env) {
  return DefineClass(env, "FabricConnection",
                     {
                         InstanceMethod<&Connection::Send>("send"),
                         InstanceMethod<&Connection::Close>("close"),
                         InstanceMethod<&Connection::Stats>("stats"),
                         InstanceAccessor<&Connection::GetMaxConnData>("maxConnData"),
                         InstanceAccessor<&Connection::GetBufferBytes>("bufferBytes"),
                         InstanceAccessor<&Connection::GetProvider>("provider"),
                     });
}

Connection::Connection(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Connection>(info) {
  env_ = info.Env();
}

Connection::~Connection() {
  // Only reached once JS holds no reference; normally close() already ran.
  state_ = State::Closed;
  depth_ = 0;
  Teardown();
}

bool Connection::Fail(Napi::Env env, const std::string &msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  state_ = State::Closed;
  Teardown();
  return false;
}

bool Connection::Setup(Napi::Env env, fi_info *info, SharedFabric fabric, Napi::Object opts,
                       Napi::Function onEvent) {
  info_ = info;
  std::string progress;
  if (!ReadUint(env, opts, "bufferBytes", kBufferBytesMin, kBufferBytesMax, 64 * 1024,
                &bufferBytes_) ||
      !ReadUint(env, opts, "recvBuffers", 2, kBufferCountMax, 64, &recvCount_) ||
      !ReadUint(env, opts, "sendBuffers", 1, kBufferCountMax, 64, &sendCount_) ||
      !ReadUint(env, opts, "zcopyThreshold", 0, kBufferBytesMax, 8192, &zcopyThreshold_) ||
      !ReadUint(env, opts, "recvPollUs", 0, kRecvPollUsMax, 0, &recvPollUs_) ||
      !ReadString(env, opts, "progress", &progress, false)) {
    state_ = State::Closed;
    Teardown();
    return false;
  }
  if (progress.empty()) progress = "auto";
  if (progress != "auto" && progress != "manual")
    return Fail(env, "progress must be \"auto\" or \"manual\", got \"" + progress + "\"");
  manual_ = progress == "manual";
  if (manual_) info->domain_attr->data_progress = FI_PROGRESS_MANUAL;
  // Queue depths bound what we may post; never post more than the provider accepts.
  // The posted count is what the peer is told it may send: it must be exact, never clamped.
  if (info->rx_attr->size && recvCount_ > info->rx_attr->size)
    return Fail(env, "recvBuffers " + std::to_string(recvCount_) +
                         " exceeds the provider's receive queue of " +
                         std::to_string(info->rx_attr->size));
  if (info->tx_attr->size && sendCount_ > info->tx_attr->size) sendCount_ = info->tx_attr->size;
  if (info->ep_attr->max_msg_size && bufferBytes_ > info->ep_attr->max_msg_size)
    return Fail(env, "bufferBytes exceeds the provider's max_msg_size");
  mrLocal_ = (info->domain_attr->mr_mode & FI_MR_LOCAL) != 0;
  iovLimit_ = info->tx_attr->iov_limit;
  onEvent_ = Napi::Persistent(onEvent);
  napi_value resName;
  napi_create_string_utf8(env, "tandem:fabric-connection", NAPI_AUTO_LENGTH, &resName);
  napi_async_init(env, nullptr, resName, &asyncCtx_);

  int rc;
  if (!fabric && (rc = OpenFabric(info->fabric_attr, &fabric))) return Fail(env, FiError("fi_fabric", rc));
  fabricRef_ = fabric;
  fabric_ = fabricRef_.get();
  fi_eq_attr eqa{};
  eqa.size = 16;
  eqa.wait_obj = FI_WAIT_FD;
  if ((rc = fi_eq_open(fabric_, &eqa, &eq_, nullptr))) return Fail(env, FiError("fi_eq_open", rc));
  if ((rc = fi_domain(fabric_, info, &domain_, nullptr)))
    return Fail(env, FiError(manual_ ? "fi_domain (manual progress)" : "fi_domain", rc));
  fi_cq_attr cqa{};
  cqa.format = FI_CQ_FORMAT_MSG;
  cqa.wait_obj = manual_ ? FI_WAIT_NONE : FI_WAIT_FD;
  cqa.size = sendCount_ + 1;
  if ((rc = fi_cq_open(domain_, &cqa, &txcq_, nullptr))) return Fail(env, FiError("fi_cq_open(tx)", rc));
  cqa.size = recvCount_ + 1;
  if ((rc = fi_cq_open(domain_, &cqa, &rxcq_, nullptr))) return Fail(env, FiError("fi_cq_open(rx)", rc));
  if ((rc = fi_endpoint(domain_, info, &ep_, nullptr))) return Fail(env, FiError("fi_endpoint", rc));
  if ((rc = fi_ep_bind(ep_, &eq_->fid, 0))) return Fail(env, FiError("fi_ep_bind(eq)", rc));
  if ((rc = fi_ep_bind(ep_, &txcq_->fid, FI_TRANSMIT))) return Fail(env, FiError("fi_ep_bind(tx)", rc));
  if ((rc = fi_ep_bind(ep_, &rxcq_->fid, FI_RECV))) return Fail(env, FiError("fi_ep_bind(rx)", rc));
  if ((rc = fi_enable(ep_))) return Fail(env, FiError("fi_enable", rc));
  size_t cmSize = 0, optLen = sizeof cmSize;
  if (fi_getopt(&ep_->fid, FI_OPT_ENDPOINT, FI_OPT_CM_DATA_SIZE, &cmSize, &optLen) == 0)
    maxConnData_ = cmSize < kConnDataMax ? cmSize : kConnDataMax;
  else
    maxConnData_ = 0;

  recvRegion_ = AllocRegion(static_cast<size_t>(recvCount_) * bufferBytes_);
  sendRegion_ = AllocRegion(static_cast<size_t>(sendCount_) * bufferBytes_);
  if (!recvRegion_ || !sendRegion_) return Fail(env, "out of memory for fabric buffers");
  if ((rc = fi_mr_reg(domain_, recvRegion_, static_cast<size_t>(recvCount_) * bufferBytes_,
                      kMrAccess, 0, 1, 0, &recvMr_, nullptr)))
    return Fail(env, FiError("fi_mr_reg(recv pool)", rc));
  if ((rc = fi_mr_reg(domain_, sendRegion_, static_cast<size_t>(sendCount_) * bufferBytes_,
                      kMrAccess, 0, 2, 0, &sendMr_, nullptr)))
    return Fail(env, FiError("fi_mr_reg(bounce pool)", rc));
  recvSlots_.resize(recvCount_);
  for (uint32_t i = 0; i < recvCount_; i++) {
    recvSlots_[i].index = i;
    if (!PostRecv(&recvSlots_[i])) return Fail(env, "fi_recv: cannot post the receive pool");
  }
  sendSlots_.resize(sendCount_);
  for (uint32_t i = 0; i < sendCount_; i++) {
    sendSlots_[i].index = i;
    freeSend_.push_back(sendCount_ - 1 - i);
  }

  uv_loop_t *loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int fd = -1;
  if (kick_.Start(loop, [this] {
        double idleBefore = emptyWakeups_;
        OnRx();
        OnTx();
        if (!manual_ || state_ == State::Closed) return;
        // Both queues empty: look again after the poll interval; otherwise at once.
        kick_.Kick(emptyWakeups_ - idleBefore >= 2 ? kManualPollMs : 0);
      }))
    return Fail(env, "uv_timer_init failed");
  if ((rc = GetWaitFd(&eq_->fid, &fd)) || eqWatch_.Start(loop, fd, [this] { OnEq(); }))
    return Fail(env, FiError("event queue wait fd", rc));
  if (!manual_) {
    if ((rc = GetWaitFd(&txcq_->fid, &fd)) || txWatch_.Start(loop, fd, [this] { OnTx(); }))
      return Fail(env, FiError("send queue wait fd", rc));
    if ((rc = GetWaitFd(&rxcq_->fid, &fd)) || rxWatch_.Start(loop, fd, [this] { OnRx(); }))
      return Fail(env, FiError("receive queue wait fd", rc));
  }
  // Arm each wait object on its own: fi_trywait over a list stops at the first queue that is
  // not empty, leaving the others unarmed (verbs: a CQ never notified). Queues that are not
  // empty yet are drained and re-armed when the connection comes up.
  if (manual_) {
    fid *f = &eq_->fid;
    fi_trywait(fabric_, &f, 1);
    kick_.Kick(kManualPollMs);
  } else {
    for (fid *f : {&eq_->fid, &txcq_->fid, &rxcq_->fid}) fi_trywait(fabric_, &f, 1);
  }
  Ref();
  refed_ = true;
  state_ = State::Connecting;
  return true;
}

bool Connection::PostRecv(RecvSlot *slot) {
  void *desc = mrLocal_ ? fi_mr_desc(recvMr_) : nullptr;
  uint8_t *buf = recvRegion_ + static_cast<size_t>(slot->index) * bufferBytes_;
  for (int i = 0; i < kSettleRounds; i++) {
    ssize_t rc = fi_recv(ep_, buf, bufferBytes_, desc, 0, &slot->ctx);
    if (rc == 0) return true;
    if (rc != -FI_EAGAIN) return false;
    fi_cq_read(rxcq_, nullptr, 0);  // drive progress, then retry
  }
  return false;
}

Napi::Value Connection::Connect(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[2].IsFunction()) {
    Napi::TypeError::New(env, "connect(options, connData, onEvent)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  std::string provider, host, port;
  if (!ReadString(env, opts, "provider", &provider, false) ||
      !ReadString(env, opts, "host", &host, true) || !ReadString(env, opts, "port", &port, true))
    return env.Undefined();
  fi_info *fi = nullptr;
  int rc = GetInfo(provider, host, port, false, &fi);
  if (rc) {
    Napi::Error::New(env, FiError("fi_getinfo", rc)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Keep only the first match; the rest of the list is not ours to keep.
  fi_info *rest = fi->next;
  fi->next = nullptr;
  if (rest) fi_freeinfo(rest);
  auto *data = env.GetInstanceData<AddonData>();
  Napi::Object obj = data->connection.New({});
  Connection *c = Connection::Unwrap(obj);
  if (!c->Setup(env, fi, nullptr, opts, info[2].As<Napi::Function>())) return env.Undefined();
  std::vector<uint8_t> cd;
  if (info[1].IsBuffer()) {
    auto b = info[1].As<Napi::Buffer<uint8_t>>();
    if (b.Length() > c->maxConnData_) {
      c->state_ = State::Closed;
      c->Teardown();
      Napi::RangeError::New(env, "connection data exceeds the provider's limit of " +
                                     std::to_string(c->maxConnData_) + " bytes")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    cd.assign(b.Data(), b.Data() + b.Length());
  }
  rc = fi_connect(c->ep_, fi->dest_addr, cd.empty() ? nullptr : cd.data(), cd.size());
  if (rc) {
    c->state_ = State::Closed;
    c->Teardown();
    Napi::Error::New(env, FiError("fi_connect", rc)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return obj;
}

Napi::Value Connection::Accept(Napi::Env env, fi_info *req, SharedFabric fabric,
                               Napi::Object opts, Napi::Value data, Napi::Function onEvent) {
  auto *ad = env.GetInstanceData<AddonData>();
  Napi::Object obj = ad->connection.New({});
  Connection *c = Connection::Unwrap(obj);
  if (!c->Setup(env, req, std::move(fabric), opts, onEvent)) return env.Undefined();
  std::vector<uint8_t> cd;
  if (data.IsBuffer()) {
    auto b = data.As<Napi::Buffer<uint8_t>>();
    size_t n = b.Length() < c->maxConnData_ ? b.Length() : c->maxConnData_;
    if (b.Length() > c->maxConnData_) {
      c->state_ = State::Closed;
      c->Teardown();
      Napi::RangeError::New(env, "connection data exceeds the provider's limit")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    cd.assign(b.Data(), b.Data() + n);
  }
  int rc = fi_accept(c->ep_, cd.empty() ? nullptr : cd.data(), cd.size());
  if (rc) {
    c->state_ = State::Closed;
    c->Teardown();
    Napi::Error::New(env, FiError("fi_accept", rc)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return obj;
}

Connection::CachedMr *Connection::Register(Napi::Env env, Napi::Buffer<uint8_t> buf) {
  uint8_t *base = buf.Data();
  size_t len = buf.Length();
  ++useClock_;
  for (auto &m : mrCache_) {
    if (!m->transient && m->base == base && m->length == len) {
      m->lastUse = useClock_;
      ++cacheHits_;
      return m.get();
    }
  }
  fid_mr *mr = nullptr;
  if (fi_mr_reg(domain_, base, len, FI_SEND | FI_READ | FI_REMOTE_READ, 0, nextMrKey_++, 0, &mr,
                nullptr))
    return nullptr;
  ++registrations_;
  auto m = std::make_unique<CachedMr>();
  m->base = base;
  m->length = len;
  m->mr = mr;
  m->ref = Napi::Reference<Napi::Value>::New(buf, 1);
  m->lastUse = useClock_;
  // Evict the least recently used idle registration when the cache is full; if all are busy
  // this one is used once and dropped at its completion.
  size_t cached = 0;
  for (auto &e : mrCache_) cached += e->transient ? 0 : 1;
  if (cached >= kMrCacheMax) {
    CachedMr *victim = nullptr;
    for (auto &e : mrCache_)
      if (!e->transient && e->inflight == 0 && (!victim || e->lastUse < victim->lastUse))
        victim = e.get();
    if (victim) {
      victim->transient = true;
      Release(nullptr);  // sweep
    } else {
      m->transient = true;
    }
  }
  mrCache_.push_back(std::move(m));
  (void)env;
  return mrCache_.back().get();
}

// Drops one in-flight use of m (if given) and frees every idle transient registration.
void Connection::Release(CachedMr *m) {
  if (m && m->inflight > 0) m->inflight--;
  for (size_t i = 0; i < mrCache_.size();) {
    CachedMr *e = mrCache_[i].get();
    if (e->transient && e->inflight == 0) {
      if (e->mr) fi_close(&e->mr->fid);
      e->ref.Reset();
      mrCache_.erase(mrCache_.begin() + static_cast<long>(i));
    } else {
      i++;
    }
  }
}

Napi::Value Connection::Send(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (state_ != State::Connected) {
    Napi::Error::New(env, "fabric connection is not connected").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (info.Length() < 5 || !info[0].IsBuffer() || !info[4].IsNumber()) {
    Napi::TypeError::New(env, "send(header, payload|null, offset, length, token)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto header = info[0].As<Napi::Buffer<uint8_t>>();
  bool hasPayload = info[1].IsBuffer();
  size_t off = 0, len = 0;
  Napi::Buffer<uint8_t> payload;
  if (hasPayload) {
    payload = info[1].As<Napi::Buffer<uint8_t>>();
    if (!info[2].IsNumber() || !info[3].IsNumber()) {
      Napi::TypeError::New(env, "offset and length must be numbers").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    double o = info[2].As<Napi::Number>().DoubleValue();
    double l = info[3].As<Napi::Number>().DoubleValue();
    if (!(o >= 0 && l >= 0 && o + l <= static_cast<double>(payload.Length()))) {
      Napi::RangeError::New(env, "payload range out of bounds").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    off = static_cast<size_t>(o);
    len = static_cast<size_t>(l);
  }
  if (header.Length() + len > bufferBytes_ || header.Length() == 0) {
    Napi::RangeError::New(env, "message larger than bufferBytes").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (freeSend_.empty()) return Napi::Boolean::New(env, false);
  SendSlot *slot = &sendSlots_[freeSend_.back()];
  uint8_t *bounce = sendRegion_ + static_cast<size_t>(slot->index) * bufferBytes_;
  std::memcpy(bounce, header.Data(), header.Length());
  iovec iov[2];
  void *desc[2] = {mrLocal_ ? fi_mr_desc(sendMr_) : nullptr, nullptr};
  size_t n = 1;
  CachedMr *zc = nullptr;
  if (len > 0 && len >= zcopyThreshold_ && iovLimit_ >= 2) zc = Register(env, payload);
  if (zc) {
    zc->inflight++;
    iov[0] = {bounce, header.Length()};
    iov[1] = {payload.Data() + off, len};
    desc[1] = mrLocal_ ? fi_mr_desc(zc->mr) : nullptr;
    n = 2;
  } else {
    if (len) std::memcpy(bounce + header.Length(), payload.Data() + off, len);
    iov[0] = {bounce, header.Length() + len};
  }
  ssize_t rc = fi_sendv(ep_, iov, desc, n, 0, &slot->ctx);
  if (rc == -FI_EAGAIN) {
    fi_cq_read(txcq_, nullptr, 0);  // drive progress; the caller retries after a completion
    if (zc) Release(zc);
    return Napi::Boolean::New(env, false);
  }
  if (rc) {
    if (zc) Release(zc);
    Napi::Error e = Napi::Error::New(env, FiError("fi_sendv", static_cast<int>(rc)));
    e.Set("code", Napi::String::New(env, ErrCode(static_cast<int>(-rc))));
    e.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  freeSend_.pop_back();
  if (manual_) kick_.Kick(0);  // the provider moves it only when we poll
  slot->busy = true;
  slot->zc = zc;
  slot->token = info[4].As<Napi::Number>().DoubleValue();
  (zc ? zeroCopyBytes_ : copiedBytes_) += static_cast<double>(len);
  sentMessages_++;
  return Napi::Boolean::New(env, true);
}

void Connection::Emit(const char *kind, std::initializer_list<napi_value> rest) {
  Napi::Env env(env_);
  std::vector<napi_value> args;
  args.push_back(Napi::String::New(env, kind));
  for (napi_value v : rest) args.push_back(v);
  if (onEvent_.IsEmpty()) return;
  napi_value recv;
  napi_get_global(env_, &recv);
  napi_value result;
  EnterJs();
  napi_status st = napi_make_callback(env_, asyncCtx_, recv, onEvent_.Value(), args.size(),
                                      args.data(), &result);
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env_, &pending);
    if (pending) {
      napi_value e;
      napi_get_and_clear_last_exception(env_, &e);
      napi_fatal_exception(env_, e);
    }
  }
  LeaveJs();
}

void Connection::EmitError(const std::string &message, const char *code, const char *where) {
  Napi::Env env(env_);
  Emit("error", {Napi::String::New(env, message), Napi::String::New(env, code),
                 Napi::String::New(env, where)});
}

void Connection::LeaveJs() {
  --depth_;
  if (depth_ == 0 && teardownPending_) Teardown();
}

void Connection::OnEq() {
  if (state_ == State::Closed) return;
  Napi::HandleScope scope{Napi::Env(env_)};
  EnterJs();
  for (int round = 0; round < kSettleRounds && state_ != State::Closed; round++) {
    alignas(8) uint8_t buf[sizeof(fi_eq_cm_entry) + kConnDataMax + 64];
    uint32_t event = 0;
    ssize_t rd = fi_eq_read(eq_, &event, buf, sizeof buf, 0);
    if (rd == -FI_EAGAIN) {
      fid *f = &eq_->fid;
      if (fi_trywait(fabric_, &f, 1) != -FI_EAGAIN) break;
      continue;
    }
    if (rd == -FI_EAVAIL) {
      fi_eq_err_entry err{};
      std::string msg = "connection failed";
      const char *code = "EFABRIC";
      if (fi_eq_readerr(eq_, &err, 0) >= 0) {
        char tmp[256];
        const char *s = fi_eq_strerror(eq_, err.prov_errno, err.err_data, tmp, sizeof tmp);
        msg = std::string(fi_strerror(err.err)) + (s ? std::string(" (") + s + ")" : "");
        code = ErrCode(err.err);
      }
      EmitError(msg, code);
      RequestClose();
      break;
    }
    if (rd < 0) {
      EmitError(FiError("fi_eq_read", static_cast<int>(rd)), "EFABRIC");
      RequestClose();
      break;
    }
    if (event == FI_CONNECTED) {
      if (state_ != State::Connecting) continue;
      state_ = State::Connected;
      size_t hdr = sizeof(fi_eq_cm_entry);
      size_t dlen = static_cast<size_t>(rd) > hdr ? static_cast<size_t>(rd) - hdr : 0;
      if (dlen > kConnDataMax) dlen = kConnDataMax;
      Emit("connected", {Napi::Buffer<uint8_t>::Copy(Napi::Env(env_), buf + hdr, dlen)});
      for (fid_cq *cq : {rxcq_, txcq_}) {
        if (state_ == State::Closed) break;
        DrainCq(cq, cq == txcq_);
        Settle(cq, cq == txcq_);
      }
    } else if (event == FI_SHUTDOWN) {
      // Completions already queued (the peer's last messages) are delivered first.
      DrainCq(rxcq_, false);
      DrainCq(txcq_, true);
      if (state_ != State::Closed) Emit("shutdown", {});
      RequestClose();
      break;
    }
  }
  LeaveJs();
}

void Connection::OnTx() {
  if (state_ == State::Closed) return;
  Napi::HandleScope scope{Napi::Env(env_)};
  EnterJs();
  wakeups_++;
  if (DrainCq(txcq_, true) == 0) emptyWakeups_++;
  Settle(txcq_, true);
  LeaveJs();
}

void Connection::OnRx() {
  if (state_ == State::Closed) return;
  Napi::HandleScope scope{Napi::Env(env_)};
  EnterJs();
  wakeups_++;
  if (DrainCq(rxcq_, false) == 0) emptyWakeups_++;
  if (recvPollUs_ > 0) {
    // recv-poll: keep reading for a while before sleeping, trading CPU for latency.
    auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(recvPollUs_);
    while (state_ != State::Closed && std::chrono::steady_clock::now() < until) {
      busyPolls_++;
      if (DrainCq(rxcq_, false) > 0)
        until = std::chrono::steady_clock::now() + std::chrono::microseconds(recvPollUs_);
    }
  }
  Settle(rxcq_, false);
  LeaveJs();
}

void Connection::Settle(fid_cq *cq, bool tx) {
  if (manual_) return;  // nothing to arm: the poll timer comes back
  for (int i = 0; i < kSettleRounds && state_ != State::Closed; i++) {
    fid *f = &cq->fid;
    if (fi_trywait(fabric_, &f, 1) != -FI_EAGAIN) return;
    DrainCq(cq, tx);
  }
  // Still busy and not armed: its fd may never fire again, so come back next loop iteration.
  if (state_ != State::Closed) kick_.Kick();
}

int Connection::DrainCq(fid_cq *cq, bool tx) {
  int handled = 0;
  while (state_ != State::Closed) {
    fi_cq_msg_entry entries[16];
    ssize_t n = fi_cq_read(cq, entries, 16);
    if (n == -FI_EAGAIN) break;
    if (n == -FI_EAVAIL) {
      HandleCqError(cq, tx);
      continue;
    }
    if (n < 0) {
      EmitError(FiError("fi_cq_read", static_cast<int>(n)), "EFABRIC");
      RequestClose();
      break;
    }
    for (ssize_t i = 0; i < n && state_ != State::Closed; i++) {
      if (tx) HandleTx(entries[i]);
      else HandleRx(entries[i]);
      handled++;
    }
  }
  return handled;
}

void Connection::HandleTx(fi_cq_msg_entry &e) {
  auto *slot = reinterpret_cast<SendSlot *>(e.op_context);
  if (slot == nullptr || slot < sendSlots_.data() || slot >= sendSlots_.data() + sendSlots_.size() ||
      !slot->busy)
    return;
  slot->busy = false;
  if (slot->zc) Release(slot->zc);
  slot->zc = nullptr;
  freeSend_.push_back(slot->index);
  Emit("sent", {Napi::Number::New(Napi::Env(env_), slot->token)});
}

void Connection::HandleRx(fi_cq_msg_entry &e) {
  auto *slot = reinterpret_cast<RecvSlot *>(e.op_context);
  if (slot == nullptr || slot < recvSlots_.data() || slot >= recvSlots_.data() + recvSlots_.size())
    return;
  size_t len = e.len <= bufferBytes_ ? e.len : bufferBytes_;
  uint8_t *buf = recvRegion_ + static_cast<size_t>(slot->index) * bufferBytes_;
  // Copy out and repost at once, so the posted count (our credits) never drifts.
  Napi::Buffer<uint8_t> copy = Napi::Buffer<uint8_t>::Copy(Napi::Env(env_), buf, len);
  recvMessages_++;
  recvBytes_ += static_cast<double>(len);
  if (!PostRecv(slot)) {
    EmitError("fi_recv: cannot repost a receive buffer", "EFABRIC");
    RequestClose();
    return;
  }
  Emit("recv", {copy});
}

void Connection::HandleCqError(fid_cq *cq, bool tx) {
  fi_cq_err_entry err{};
  if (fi_cq_readerr(cq, &err, 0) < 0) {
    EmitError("fi_cq_readerr failed", "EFABRIC");
    RequestClose();
    return;
  }
  if (err.err == FI_ECANCELED) return;  // flushed by close
  if (tx) {
    auto *slot = reinterpret_cast<SendSlot *>(err.op_context);
    if (slot >= sendSlots_.data() && slot < sendSlots_.data() + sendSlots_.size() && slot->busy) {
      slot->busy = false;
      if (slot->zc) Release(slot->zc);
      slot->zc = nullptr;
      freeSend_.push_back(slot->index);
    }
  }
  char tmp[256];
  const char *s = fi_cq_strerror(cq, err.prov_errno, err.err_data, tmp, sizeof tmp);
  std::string msg = std::string(tx ? "send" : "receive") + " failed: " + fi_strerror(err.err) +
                    (s ? std::string(" (") + s + ")" : "");
  EmitError(msg, ErrCode(err.err), tx ? "send" : "receive");
  RequestClose();
}

void Connection::RequestClose() {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  // No fi_shutdown: fi_close disconnects too, and with the sockets provider a shutdown
  // followed by a close makes its CM thread close the socket a second time.
  // (Peers still see FI_SHUTDOWN.)
  eqWatch_.Stop();
  txWatch_.Stop();
  rxWatch_.Stop();
  kick_.Stop();
  if (depth_ > 0) teardownPending_ = true;
  else Teardown();
}

void Connection::Teardown() {
  teardownPending_ = false;
  eqWatch_.Stop();
  txWatch_.Stop();
  rxWatch_.Stop();
  kick_.Stop();
  // The endpoint goes first: after it is closed no DMA can touch our buffers any more.
  if (ep_) fi_close(&ep_->fid), ep_ = nullptr;
  for (auto &m : mrCache_) {
    if (m->mr) fi_close(&m->mr->fid);
    m->mr = nullptr;
    if (!m->ref.IsEmpty()) m->ref.Reset();
  }
  mrCache_.clear();
  for (auto &s : sendSlots_) s.busy = false, s.zc = nullptr;
  if (recvMr_) fi_close(&recvMr_->fid), recvMr_ = nullptr;
  if (sendMr_) fi_close(&sendMr_->fid), sendMr_ = nullptr;
  if (txcq_) fi_close(&txcq_->fid), txcq_ = nullptr;
  if (rxcq_) fi_close(&rxcq_->fid), rxcq_ = nullptr;
  if (eq_) fi_close(&eq_->fid), eq_ = nullptr;
  if (domain_) fi_close(&domain_->fid), domain_ = nullptr;
  fabric_ = nullptr;
  fabricRef_.reset();
  if (info_) fi_freeinfo(info_), info_ = nullptr;
  free(recvRegion_), recvRegion_ = nullptr;
  free(sendRegion_), sendRegion_ = nullptr;
  if (asyncCtx_) napi_async_destroy(env_, asyncCtx_), asyncCtx_ = nullptr;
  if (!onEvent_.IsEmpty()) onEvent_.Reset();
  if (refed_) {
    refed_ = false;
    Unref();
  }
}

Napi::Value Connection::Close(const Napi::CallbackInfo &info) {
  RequestClose();
  return info.Env().Undefined();
}

Napi::Value Connection::Stats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("zeroCopyBytes", zeroCopyBytes_);
  o.Set("copiedBytes", copiedBytes_);
  o.Set("sentMessages", sentMessages_);
  o.Set("recvMessages", recvMessages_);
  o.Set("recvBytes", recvBytes_);
  o.Set("registrations", registrations_);
  o.Set("registrationCacheHits", cacheHits_);
  o.Set("busyPolls", busyPolls_);
  o.Set("wakeups", wakeups_);
  o.Set("emptyWakeups", emptyWakeups_);
  o.Set("progress", manual_ ? "manual" : "auto");
  o.Set("sendBuffersFree", static_cast<double>(freeSend_.size()));
  return o;
}

Napi::Value Connection::GetMaxConnData(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), static_cast<double>(maxConnData_));
}
Napi::Value Connection::GetBufferBytes(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), bufferBytes_);
}
Napi::Value Connection::GetProvider(const Napi::CallbackInfo &info) {
  const char *p = info_ && info_->fabric_attr->prov_name ? info_->fabric_attr->prov_name : "";
  return Napi::String::New(info.Env(), p);
}

}  // namespace tandem
