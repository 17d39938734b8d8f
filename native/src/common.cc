// Shared helpers of the libfabric binding (see common.h).
#include "common.h"

#include <cstring>

namespace tandem {

std::string FiError(const char *what, int rc) {
  int e = rc < 0 ? -rc : rc;
  return std::string(what) + ": " + fi_strerror(e) + " (" + std::to_string(rc) + ")";
}

fi_info *MsgHints(const std::string &provider) {
  fi_info *hints = fi_allocinfo();
  if (hints == nullptr) return nullptr;
  hints->ep_attr->type = FI_EP_MSG;
  hints->caps = FI_MSG | FI_RMA;
  // What verbs needs; providers that need less (tcp, sockets) clear the bits they ignore.
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->domain_attr->threading = FI_THREAD_DOMAIN;
  hints->mode = FI_CONTEXT;
  if (!provider.empty()) hints->fabric_attr->prov_name = strdup(provider.c_str());
  return hints;
}

int GetInfo(const std::string &provider, const std::string &node, const std::string &service,
            bool source, fi_info **out) {
  fi_info *hints = MsgHints(provider);
  if (hints == nullptr) return -FI_ENOMEM;
  int rc = fi_getinfo(kFabricVersion, node.empty() ? nullptr : node.c_str(),
                      service.empty() ? nullptr : service.c_str(), source ? FI_SOURCE : 0, hints,
                      out);
  fi_freeinfo(hints);
  return rc;
}

int FdWatcher::Start(uv_loop_t *loop, int fd, Callback cb) {
  Stop();
  auto *h = new Handle();
  h->owner = this;
  int rc = uv_poll_init(loop, &h->poll, fd);
  if (rc != 0) {
    delete h;
    return rc;
  }
  h->poll.data = h;
  rc = uv_poll_start(&h->poll, UV_READABLE, OnPoll);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t *>(&h->poll),
             [](uv_handle_t *p) { delete static_cast<Handle *>(p->data); });
    return rc;
  }
  handle_ = h;
  cb_ = std::move(cb);
  return 0;
}

void FdWatcher::Stop() {
  if (handle_ == nullptr) return;
  Handle *h = handle_;
  handle_ = nullptr;
  h->owner = nullptr;
  uv_poll_stop(&h->poll);
  uv_close(reinterpret_cast<uv_handle_t *>(&h->poll),
           [](uv_handle_t *p) { delete static_cast<Handle *>(p->data); });
}

void FdWatcher::OnPoll(uv_poll_t *p, int /*status*/, int /*events*/) {
  auto *h = static_cast<Handle *>(p->data);
  // An error status still means "look at the queue": the queue read reports the real error.
  if (h->owner != nullptr && h->owner->cb_) h->owner->cb_();
}

int GetWaitFd(fid_t fid, int *fd) { return fi_control(fid, FI_GETWAIT, fd); }

void CallJs(Napi::Env env, Napi::FunctionReference &fn, napi_async_context ctx,
            const std::initializer_list<napi_value> &args) {
  if (fn.IsEmpty()) return;
  napi_value recv;
  napi_get_global(env, &recv);
  napi_value result;
  napi_status st = napi_make_callback(env, ctx, recv, fn.Value(), args.size(),
                                      args.size() ? args.begin() : nullptr, &result);
  if (st != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value e;
      napi_get_and_clear_last_exception(env, &e);
      napi_fatal_exception(env, e);
    }
  }
}

bool ReadUint(Napi::Env env, Napi::Object o, const char *key, uint32_t lo, uint32_t hi,
              uint32_t dflt, uint32_t *out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) {
    *out = dflt;
    return true;
  }
  if (!v.IsNumber()) {
    Napi::TypeError::New(env, std::string(key) + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= lo && d <= hi) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    Napi::RangeError::New(env, std::string(key) + " must be an integer in [" + std::to_string(lo) +
                                   ", " + std::to_string(hi) + "]")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

bool ReadString(Napi::Env env, Napi::Object o, const char *key, std::string *out, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() && !required) return true;
  if (!v.IsString()) {
    Napi::TypeError::New(env, std::string(key) + " must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  return true;
}

}  // namespace tandem
