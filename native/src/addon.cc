// Entry point of the tandem_fabric addon: a thin libfabric binding. Framing, credits and policy
// live in TypeScript (src/transport/fabric/); this file only exports the pieces.
#include "common.h"
#include "connection.h"
#include "listener.h"

#include <cstring>

namespace tandem {


// getinfo({provider?, host, port?, source?}) -> [{provider, fabric, domain, caps}]; [] when none.
static Napi::Value GetInfoJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    Napi::TypeError::New(env, "getinfo(options)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  std::string provider, host, port;
  if (!ReadString(env, o, "provider", &provider, false) || !ReadString(env, o, "host", &host, false) ||
      !ReadString(env, o, "port", &port, false))
    return env.Undefined();
  bool source = o.Get("source").ToBoolean();
  fi_info *res = nullptr;
  Napi::Array arr = Napi::Array::New(env);
  int rc = GetInfo(provider, host, port, source, &res);
  if (rc) return arr;
  uint32_t i = 0;
  for (fi_info *cur = res; cur; cur = cur->next) {
    Napi::Object e = Napi::Object::New(env);
    e.Set("provider", cur->fabric_attr->prov_name ? cur->fabric_attr->prov_name : "");
    e.Set("fabric", cur->fabric_attr->name ? cur->fabric_attr->name : "");
    e.Set("domain", cur->domain_attr->name ? cur->domain_attr->name : "");
    e.Set("caps", fi_tostr(&cur->caps, FI_TYPE_CAPS));
    e.Set("mrMode", static_cast<double>(cur->domain_attr->mr_mode));
    e.Set("iovLimit", static_cast<double>(cur->tx_attr->iov_limit));
    arr.Set(i++, e);
  }
  fi_freeinfo(res);
  return arr;
}

static Napi::Value VersionJs(const Napi::CallbackInfo &info) {
  uint32_t v = fi_version();
  return Napi::String::New(info.Env(), std::to_string(FI_MAJOR(v)) + "." + std::to_string(FI_MINOR(v)));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto *data = new AddonData();
  data->connection = Napi::Persistent(Connection::Init(env));
  data->listener = Napi::Persistent(Listener::Init(env));
  env.SetInstanceData<AddonData>(data);
  exports.Set("getinfo", Napi::Function::New(env, GetInfoJs));
  exports.Set("version", Napi::Function::New(env, VersionJs));
  // What src/transport/fabric/addon.ts checks (FABRIC_BINDING_VERSION): bump it whenever the
  // TypeScript side relies on new addon behaviour, so a stale build says "rebuild" instead of
  // misbehaving. 2: unique keys for on-the-fly registrations, EIO named.
  exports.Set("bindingVersion", Napi::Number::New(env, 2));
  exports.Set("connect", Napi::Function::New(env, Connection::Connect));
  exports.Set("listen", Napi::Function::New(env, Listener::Listen));
  return exports;
}

}  // namespace tandem

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  return tandem::Init(env, exports);
}

NODE_API_MODULE(tandem_fabric, InitAddon)
