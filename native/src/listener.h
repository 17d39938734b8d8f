// A passive FI_EP_MSG endpoint listening on host:port. Connection requests are handed to JS
// with their connection data and an id; JS accepts or rejects each. Unanswered requests are
// bounded (kPendingConnReqMax) and rejected when the listener closes.
#pragma once

#include "common.h"

#include <map>

namespace tandem {

class Listener : public Napi::ObjectWrap<Listener> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Listener(const Napi::CallbackInfo &info);
  ~Listener() override;
  static Napi::Value Listen(const Napi::CallbackInfo &info);

 private:
  bool Setup(Napi::Env env, const std::string &provider, const std::string &host,
             const std::string &port, Napi::Function onEvent);
  Napi::Value Accept(const Napi::CallbackInfo &info);
  Napi::Value Reject(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info);
  Napi::Value GetPort(const Napi::CallbackInfo &info);
  Napi::Value GetProvider(const Napi::CallbackInfo &info);
  Napi::Value GetMaxConnData(const Napi::CallbackInfo &info);
  void OnEq();
  void Teardown();

  napi_env env_ = nullptr;
  napi_async_context asyncCtx_ = nullptr;
  Napi::FunctionReference onEvent_;
  fi_info *info_ = nullptr;
  SharedFabric fabricRef_;
  fid_fabric *fabric_ = nullptr;
  fid_eq *eq_ = nullptr;
  fid_pep *pep_ = nullptr;
  FdWatcher watch_;
  std::map<uint32_t, fi_info *> pending_;
  uint32_t nextId_ = 1;
  int port_ = 0;
  size_t maxConnData_ = 0;
  int depth_ = 0;
  bool closed_ = false;
  bool refed_ = false;
};

}  // namespace tandem
