// Passive endpoint (see listener.h).
#include "listener.h"

#include <cstring>

#include "connection.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <utility>

namespace tandem {

Napi::Function Listener::Init(Napi::Env env) {
  return DefineClass(env, "FabricListener",
                     {
                         InstanceMethod<&Listener::Accept>("accept"),
                         InstanceMethod<&Listener::Reject>("reject"),
                         InstanceMethod<&Listener::Close>("close"),
                         InstanceAccessor<&Listener::GetPort>("port"),
                         InstanceAccessor<&Listener::GetProvider>("provider"),
                         InstanceAccessor<&Listener::GetMaxConnData>("maxConnData"),
                     });
}

Listener::Listener(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Listener>(info) {
  env_ = info.Env();
}

Listener::~Listener() {
  closed_ = true;
  Teardown();
}

Napi::Value Listener::Listen(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "listen(options, onEvent)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object opts = info[0].As<Napi::Object>();
  std::string provider, host, port;
  if (!ReadString(env, opts, "provider", &provider, false) ||
      !ReadString(env, opts, "host", &host, true) || !ReadString(env, opts, "port", &port, true))
    return env.Undefined();
  auto *data = env.GetInstanceData<AddonData>();
  Napi::Object obj = data->listener.New({});
  Listener *l = Listener::Unwrap(obj);
  if (!l->Setup(env, provider, host, port, info[1].As<Napi::Function>())) return env.Undefined();
  return obj;
}

bool Listener::Setup(Napi::Env env, const std::string &provider, const std::string &host,
                     const std::string &port, Napi::Function onEvent) {
  auto fail = [&](const std::string &m) {
    Napi::Error::New(env, m).ThrowAsJavaScriptException();
    closed_ = true;
    Teardown();
    return false;
  };
  int rc = GetInfo(provider, host, port, true, &info_);
  if (rc) return fail(FiError("fi_getinfo", rc));
  if (info_->next) {
    fi_freeinfo(info_->next);
    info_->next = nullptr;
  }
  if ((rc = OpenFabric(info_->fabric_attr, &fabricRef_))) return fail(FiError("fi_fabric", rc));
  fabric_ = fabricRef_.get();
  fi_eq_attr eqa{};
  eqa.size = 64;
  eqa.wait_obj = FI_WAIT_FD;
  if ((rc = fi_eq_open(fabric_, &eqa, &eq_, nullptr))) return fail(FiError("fi_eq_open", rc));
  if ((rc = fi_passive_ep(fabric_, info_, &pep_, nullptr))) return fail(FiError("fi_passive_ep", rc));
  if ((rc = fi_pep_bind(pep_, &eq_->fid, 0))) return fail(FiError("fi_pep_bind", rc));
  if ((rc = fi_listen(pep_))) return fail(FiError("fi_listen", rc));
  sockaddr_storage ss{};
  size_t alen = sizeof ss;
  if (fi_getname(&pep_->fid, &ss, &alen) == 0) {
    if (ss.ss_family == AF_INET) port_ = ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
    else if (ss.ss_family == AF_INET6)
      port_ = ntohs(reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
  }
  size_t cm = 0, olen = sizeof cm;
  if (fi_getopt(&pep_->fid, FI_OPT_ENDPOINT, FI_OPT_CM_DATA_SIZE, &cm, &olen) == 0)
    maxConnData_ = cm < kConnDataMax ? cm : kConnDataMax;
  onEvent_ = Napi::Persistent(onEvent);
  napi_value resName;
  napi_create_string_utf8(env, "tandem:fabric-listener", NAPI_AUTO_LENGTH, &resName);
  napi_async_init(env, nullptr, resName, &asyncCtx_);
  uv_loop_t *loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int fd = -1;
  if ((rc = GetWaitFd(&eq_->fid, &fd))) return fail(FiError("event queue wait fd", rc));
  if (watch_.Start(loop, fd, [this] { OnEq(); })) return fail("uv_poll_start failed");
  fid *f = &eq_->fid;
  fi_trywait(fabric_, &f, 1);
  Ref();
  refed_ = true;
  return true;
}

void Listener::OnEq() {
  if (closed_) return;
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  depth_++;
  for (int round = 0; round < 256 && !closed_; round++) {
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
      fi_eq_readerr(eq_, &err, 0);  // a failed handshake of one request; the listener lives on
      continue;
    }
    if (rd < 0) break;
    if (event != FI_CONNREQ) continue;
    auto *entry = reinterpret_cast<fi_eq_cm_entry *>(buf);
    fi_info *req = entry->info;
    if (req == nullptr) continue;
    if (pending_.size() >= kPendingConnReqMax) {
      fi_reject(pep_, req->handle, nullptr, 0);
      fi_freeinfo(req);
      continue;
    }
    uint32_t id = nextId_++;
    pending_[id] = req;
    size_t hdr = sizeof(fi_eq_cm_entry);
    size_t dlen = static_cast<size_t>(rd) > hdr ? static_cast<size_t>(rd) - hdr : 0;
    if (dlen > kConnDataMax) dlen = kConnDataMax;
    napi_value args[3] = {Napi::String::New(env, "connreq"), Napi::Number::New(env, id),
                          Napi::Buffer<uint8_t>::Copy(env, buf + hdr, dlen)};
    napi_value recv, result;
    napi_get_global(env_, &recv);
    if (napi_make_callback(env_, asyncCtx_, recv, onEvent_.Value(), 3, args, &result) != napi_ok) {
      bool pend = false;
      napi_is_exception_pending(env_, &pend);
      if (pend) {
        napi_value e;
        napi_get_and_clear_last_exception(env_, &e);
        napi_fatal_exception(env_, e);
      }
    }
  }
  depth_--;
  if (closed_ && depth_ == 0) Teardown();
}

Napi::Value Listener::Accept(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsObject() || !info[3].IsFunction()) {
    Napi::TypeError::New(env, "accept(id, options, connData, onEvent)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t id = info[0].As<Napi::Number>().Uint32Value();
  auto it = pending_.find(id);
  if (closed_ || it == pending_.end()) {
    Napi::Error::New(env, "no pending connection request with this id").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  fi_info *req = it->second;
  pending_.erase(it);
  // sockets leaves the provider's name out of a connection request's info; the accepted
  // connection reports it (`provider`), and it is the listener's provider.
  if (req->fabric_attr && !req->fabric_attr->prov_name && info_ && info_->fabric_attr &&
      info_->fabric_attr->prov_name)
    req->fabric_attr->prov_name = strdup(info_->fabric_attr->prov_name);
  // The new connection owns req from here on, whether it succeeds or not.
  return Connection::Accept(env, req, fabricRef_, info[1].As<Napi::Object>(), info[2],
                            info[3].As<Napi::Function>());
}

Napi::Value Listener::Reject(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "reject(id)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto it = pending_.find(info[0].As<Napi::Number>().Uint32Value());
  if (it != pending_.end()) {
    if (pep_) fi_reject(pep_, it->second->handle, nullptr, 0);
    fi_freeinfo(it->second);
    pending_.erase(it);
  }
  return env.Undefined();
}

void Listener::Teardown() {
  watch_.Stop();
  for (auto &p : pending_) {
    if (pep_) fi_reject(pep_, p.second->handle, nullptr, 0);
    fi_freeinfo(p.second);
  }
  pending_.clear();
  if (pep_) fi_close(&pep_->fid), pep_ = nullptr;
  if (eq_) fi_close(&eq_->fid), eq_ = nullptr;
  fabric_ = nullptr;
  fabricRef_.reset();  // the fabric itself lives on while accepted connections use it
  if (info_) fi_freeinfo(info_), info_ = nullptr;
  if (asyncCtx_) napi_async_destroy(env_, asyncCtx_), asyncCtx_ = nullptr;
  if (!onEvent_.IsEmpty()) onEvent_.Reset();
  if (refed_) {
    refed_ = false;
    Unref();
  }
}

Napi::Value Listener::Close(const Napi::CallbackInfo &info) {
  if (!closed_) {
    closed_ = true;
    watch_.Stop();
    if (depth_ == 0) Teardown();
  }
  return info.Env().Undefined();
}

Napi::Value Listener::GetPort(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), port_);
}
Napi::Value Listener::GetProvider(const Napi::CallbackInfo &info) {
  const char *p = info_ && info_->fabric_attr->prov_name ? info_->fabric_attr->prov_name : "";
  return Napi::String::New(info.Env(), p);
}
Napi::Value Listener::GetMaxConnData(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), static_cast<double>(maxConnData_));
}

}  // namespace tandem
