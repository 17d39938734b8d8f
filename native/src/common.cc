// Shared helpers of the libfabric binding (see common.h).
#include "common.h"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace tandem {

std::string FiError(const char *what, int rc) {
  int e = rc < 0 ? -rc : rc;
  return std::string(what) + ": " + fi_strerror(e) + " (" + std::to_string(rc) + ")";
}

int OpenFabric(fi_fabric_attr *attr, SharedFabric *out) {
  fid_fabric *fab = nullptr;
  int rc = fi_fabric(attr, &fab, nullptr);
  if (rc) return rc;
  *out = SharedFabric(fab, [](fid_fabric *f) { fi_close(&f->fid); });
  return 0;
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

namespace {
void CloseHandle(uv_handle_t *p) {
  auto *h = static_cast<FdWatcher::Handle *>(p->data);
  close(h->fd);
  delete h;
}
}  // namespace

int FdWatcher::Start(uv_loop_t *loop, int fd, Callback cb) {
  Stop();
  // Poll our own duplicate: a provider thread may close or reuse its fd number while libuv
  // still has it registered (seen with the sockets provider), and libuv aborts on EBADF.
  // The duplicate goes high in the fd table, away from the low numbers providers allocate:
  // libfabric 1.17's sockets provider closes some of its socket numbers twice, which would
  // otherwise hit whatever we reopened under that number.
  rlimit rl{};
  int base = 0;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= 256)
    base = static_cast<int>(rl.rlim_cur / 2);
  int own = fcntl(fd, F_DUPFD_CLOEXEC, base);
  if (own < 0) own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return -errno;
  auto *h = new Handle();
  h->owner = this;
  h->fd = own;
  int rc = uv_poll_init(loop, &h->poll, own);
  if (rc != 0) {
    close(own);
    delete h;
    return rc;
  }
  h->poll.data = h;
  rc = uv_poll_start(&h->poll, UV_READABLE, OnPoll);
  if (rc != 0) {
    uv_close(reinterpret_cast<uv_handle_t *>(&h->poll), CloseHandle);
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
  uv_close(reinterpret_cast<uv_handle_t *>(&h->poll), CloseHandle);
}

void FdWatcher::OnPoll(uv_poll_t *p, int /*status*/, int /*events*/) {
  auto *h = static_cast<Handle *>(p->data);
  // An error status still means "look at the queue": the queue read reports the real error.
  if (h->owner != nullptr && h->owner->cb_) h->owner->cb_();
}

int Kicker::Start(uv_loop_t *loop, Callback cb) {
  Stop();
  auto *h = new Handle();
  h->owner = this;
  int rc = uv_timer_init(loop, &h->timer);
  if (rc != 0) {
    delete h;
    return rc;
  }
  h->timer.data = h;
  uv_unref(reinterpret_cast<uv_handle_t *>(&h->timer));  // never keeps the process alive
  handle_ = h;
  cb_ = std::move(cb);
  return 0;
}

void Kicker::Kick(uint64_t delayMs) {
  if (handle_ == nullptr) return;
  if (uv_is_active(reinterpret_cast<uv_handle_t *>(&handle_->timer)) &&
      (delayMs > 0 || uv_timer_get_due_in(&handle_->timer) == 0))
    return;
  uv_timer_start(
      &handle_->timer,
      [](uv_timer_t *t) {
        auto *h = static_cast<Handle *>(t->data);
        if (h->owner != nullptr && h->owner->cb_) h->owner->cb_();
      },
      delayMs, 0);
}

void Kicker::Stop() {
  if (handle_ == nullptr) return;
  Handle *h = handle_;
  handle_ = nullptr;
  h->owner = nullptr;
  uv_timer_stop(&h->timer);
  uv_close(reinterpret_cast<uv_handle_t *>(&h->timer),
           [](uv_handle_t *p) { delete static_cast<Handle *>(p->data); });
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
