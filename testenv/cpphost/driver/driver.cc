// meshplug-cpphost: plays Envoy's part around proxy-wasm-cpp-host (the host library
// Envoy embeds for Wasm) so that meshplug's compiled .wasm filters can be run on the real
// host library with the WAMR engine. It reads a scenario (JSON, from the file named by
// the first argument or stdin) and writes what happened (JSON, stdout). The scenario
// format and its Go side are in testenv/cpphost (scenario.go); this file follows
// Envoy's source/extensions/common/wasm/context.cc where the ABI leaves a choice, and
// says so. Written for meshplug; cpp-host's test/utility.h shows the same shape.
//
// What it models: createWasm + configuration canary, a thread-local plugin per worker
// (one worker: the main thread), several plugins (root contexts) per VM keyed like
// Envoy (vm_id + code), per-stream contexts through a chain of plugins, header maps with
// Envoy's HeaderMapImpl semantics (lower-case names, inline headers append, setCopy
// replaces all), deferred local replies, properties, cpp-host's own shared data and
// queues, ticks from a scripted clock, HTTP callouts, gRPC calls and streams answered
// from the scenario (what the guest sent recorded: "sent"), the VM's environment
// (Plugin.Env through WasmBase's envs), logs (including the guest's stderr), metrics, the buffer limit on
// both directions, and VM failure (failStream: 503 unless fail_open; FAIL_RELOAD's
// reload after the backoff). What it does not model is Envoy's filter manager beyond one chain in
// order: see testenv/cpphost/README.md.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "include/proxy-wasm/context.h"
#include "include/proxy-wasm/wamr.h"
#include "include/proxy-wasm/wasm.h"
#include "src/shared_data.h"

#ifndef MESHPLUG_CPPHOST_COMMIT
#define MESHPLUG_CPPHOST_COMMIT "unknown"
#endif

using json = nlohmann::json;
using namespace proxy_wasm;

namespace {

// The worker whose thread this is (-1: the main thread, where createWasm runs the base VM
// and its configuration canary, as on Envoy's main thread).
thread_local int current_worker = -1;

using Headers = std::vector<std::pair<std::string, std::string>>;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto &c : out) {
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
  }
  return out;
}

// Inline headers of Envoy's header maps (header_map_impl.h): addCopy to one that exists
// appends ",value" to it instead of adding a second entry.
const std::vector<std::string> kInlineCommon = {
    "connection", "content-type", "content-length", "keep-alive", "proxy-connection",
    "proxy-status", "x-request-id", "transfer-encoding", "upgrade", "via",
    "x-envoy-decorator-operation"};
const std::vector<std::string> kInlineRequest = {
    ":authority", ":path", ":method", ":scheme", ":protocol", "user-agent", "authorization",
    "expect", "te", "grpc-timeout", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
    "x-forwarded-client-cert", "x-client-trace-id", "x-envoy-internal", "x-envoy-original-path",
    "x-envoy-expected-rq-timeout-ms", "x-envoy-max-retries", "x-envoy-retry-on",
    "x-envoy-retry-grpc-on", "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms", "x-envoy-external-address",
    "x-envoy-downstream-service-cluster", "x-envoy-downstream-service-node",
    "x-envoy-force-trace"};
const std::vector<std::string> kInlineResponse = {
    ":status", "date", "server", "location", "etag", "grpc-status", "grpc-message",
    "x-envoy-upstream-service-time", "x-envoy-overloaded", "x-envoy-ratelimited",
    "x-envoy-degraded", "x-envoy-upstream-canary", "x-envoy-immediate-health-check-fail",
    "x-envoy-upstream-healthchecked-cluster"};

bool isInline(WasmHeaderMapType t, const std::string &k) {
  auto in = [&](const std::vector<std::string> &v) {
    return std::find(v.begin(), v.end(), k) != v.end();
  };
  switch (t) {
  case WasmHeaderMapType::RequestHeaders:
    return in(kInlineRequest) || in(kInlineCommon);
  case WasmHeaderMapType::ResponseHeaders:
    return in(kInlineResponse) || in(kInlineCommon);
  default:
    return false;
  }
}

// HeaderList::insert: pseudo-headers after the last pseudo-header, others at the end.
void insertHeader(Headers &m, std::string k, std::string v) {
  if (!k.empty() && k[0] == ':') {
    auto it = m.begin();
    while (it != m.end() && !it->first.empty() && it->first[0] == ':') {
      ++it;
    }
    m.insert(it, {std::move(k), std::move(v)});
    return;
  }
  m.emplace_back(std::move(k), std::move(v));
}

void addHeader(Headers &m, WasmHeaderMapType t, const std::string &k, std::string_view v) {
  if (isInline(t, k)) {
    for (auto &p : m) {
      if (p.first == k) {
        p.second += ",";
        p.second += v;
        return;
      }
    }
  }
  insertHeader(m, k, std::string(v));
}

void removeHeader(Headers &m, const std::string &k) {
  m.erase(std::remove_if(m.begin(), m.end(), [&](const auto &p) { return p.first == k; }),
          m.end());
}

json headersJSON(const Headers &h) {
  json out = json::array();
  for (const auto &p : h) {
    out.push_back(json::array({p.first, p.second}));
  }
  return out;
}

Headers headersFrom(const json &j) {
  Headers h;
  if (j.is_array()) {
    for (const auto &p : j) {
      h.emplace_back(lower(p.at(0).get<std::string>()), p.at(1).get<std::string>());
    }
  }
  return h;
}

// A body buffer with Envoy's Buffer semantics for proxy_set_buffer_bytes
// (Context::setBuffer → Buffer::copyFrom rules, like testenv's setBuffer).
class StringBuffer : public BufferInterface {
public:
  explicit StringBuffer(std::string *s, bool mutable_ = true) : s_(s), mutable_(mutable_) {}
  size_t size() const override { return s_->size(); }
  WasmResult copyTo(WasmBase *wasm, size_t start, size_t length, uint64_t ptr_ptr,
                    uint64_t size_ptr) const override {
    std::string_view v(*s_);
    if (start > v.size()) {
      start = v.size();
    }
    v = v.substr(start, length);
    if (!wasm->copyToPointerSize(v, ptr_ptr, size_ptr)) {
      return WasmResult::InvalidMemoryAccess;
    }
    return WasmResult::Ok;
  }
  WasmResult copyFrom(size_t start, size_t length, std::string_view data) override {
    if (!mutable_) {
      return WasmResult::BadArgument;
    }
    size_t size = s_->size();
    if (start == 0 && length < size) {
      *s_ = std::string(data) + s_->substr(length);
    } else if (start == 0) {
      *s_ = std::string(data);
    } else if (start >= size) {
      s_->append(data);
    } else {
      return WasmResult::BadArgument;
    }
    return WasmResult::Ok;
  }

private:
  std::string *s_;
  bool mutable_;
};

struct Metric {
  uint32_t type = 0;
  std::string name;
  int64_t value = 0;
};

struct LocalReply {
  uint32_t code = 0;
  std::string body;
  Headers headers;
  int64_t grpc_status = -1;
  std::string details;
};

struct PendingCall {
  bool grpc = false; // a gRPC call or stream (else HTTP)
  // A gRPC stream (proxy_grpc_stream, even token): answered one callback at a time
  // (stage 0: initial metadata, then each message, trailing metadata, close), so a
  // cancel from a callback stops the rest.
  bool stream = false;
  size_t stage = 0;
  bool local_closed = false; // proxy_grpc_send with end_stream, or proxy_grpc_close
  uint32_t token;
  uint32_t context_id;
  WasmBase *wasm;
  int worker; // the thread of the VM that made it: the answer is delivered there
  std::string cluster;
  Headers headers;
  std::string body;
};

struct Timer {
  WasmBase *wasm;
  int worker;
  uint32_t root_context_id;
  uint64_t period_ms;
  uint64_t next_ms;
};

// Process-wide state of one run (one worker thread).
struct Env {
  json logs = json::array();
  std::map<std::string, Metric> metrics; // by name, like Envoy's stats scope
  std::vector<std::string> metric_names; // id - 1 → name
  uint64_t start_unix_ns = 1767225600000000000ULL; // 2026-01-01T00:00:00Z
  uint64_t now_ms = 0;                             // scripted clock, since start
  uint32_t log_level = 2;                          // info
  std::vector<Timer> timers;
  std::vector<PendingCall> calls;
  uint32_t next_token = 1;
  std::vector<std::string> errors;
  json callouts = json::object(); // cluster → {status, headers, body}
  json grpc_callouts = json::object(); // cluster → GrpcAnswer (cpphost.go)
  uint32_t next_grpc_token = 1;      // odd: calls (Envoy's are odd, streams even)
  uint32_t next_stream_token = 2;    // even: streams
  // "base" while createWasm runs (the base VM and its configuration canary, which
  // testenv does not have), "" after.
  std::string phase;
  std::vector<std::string> known_clusters;
  std::string node_id; // xds.node.id
  // Envoy's allow_on_headers_stop_iteration (cpp-host's ContextBase field of that
  // name): a headers Pause stays StopIteration instead of StopAllIterationAndWatermark.
  bool allow_on_headers_stop_iteration = false;
  // What the guests sent out (proxy_http_call, proxy_grpc_call, proxy_grpc_stream,
  // proxy_grpc_send), in order, each with the step it happened in (-1: at start).
  json sent = json::array();
  int step = -1;
};
Env env;

std::string toHex(std::string_view s) {
  static const char *hexd = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += hexd[c >> 4];
    out += hexd[c & 15];
  }
  return out;
}

json pairsJSON(const Pairs &pairs) {
  json out = json::array();
  for (const auto &p : pairs) {
    out.push_back(json::array({std::string(p.first), std::string(p.second)}));
  }
  return out;
}

// recordSent records a callout request the host accepted, as the guest passed it.
void recordSent(json c) {
  c["step"] = env.step;
  c["worker"] = current_worker;
  env.sent.push_back(std::move(c));
}

void logLine(uint32_t level, std::string_view plugin, std::string_view msg, bool host = false) {
  if (level < env.log_level) {
    return;
  }
  json l = {{"level", level}, {"plugin", plugin}, {"message", msg}, {"worker", current_worker}};
  if (host) {
    l["host"] = true; // the host's report of a VM failure (engine-specific text)
  }
  if (!env.phase.empty()) {
    l["phase"] = env.phase;
  }
  env.logs.push_back(l);
}

// Worker is one of Envoy's worker threads: a real thread, because cpp-host keeps its
// thread-local VMs and plugins (getOrCreateThreadLocalPlugin's local_wasms /
// local_plugins) and the current context in thread_local variables. The main thread
// hands it one task at a time and waits (runOn), so exactly one thread runs at a time
// and the run is deterministic. Work posted to it from a VM of another worker (a shared
// queue's onQueueReady, cpp-host's callOnThreadFunction, as Envoy's dispatcher post) runs
// after its current task, or at the end of the step (settle).
struct Worker {
  int id = 0;
  std::thread thread;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> tasks;  // from the main thread (runOn)
  std::deque<std::function<void()>> posted; // callOnThreadFunction
  bool stop = false;

  void loop() {
    current_worker = id;
    while (true) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return stop || !tasks.empty(); });
        if (tasks.empty()) {
          return;
        }
        f = std::move(tasks.front());
        tasks.pop_front();
      }
      f();
    }
  }
  bool hasPosted() {
    std::lock_guard<std::mutex> l(mu);
    return !posted.empty();
  }
  // Runs what was posted to this worker (on its thread).
  void drainPosted() {
    while (true) {
      std::function<void()> f;
      {
        std::lock_guard<std::mutex> l(mu);
        if (posted.empty()) {
          return;
        }
        f = std::move(posted.front());
        posted.pop_front();
      }
      f();
    }
  }
};
std::vector<std::unique_ptr<Worker>> workers;

// runOn runs f on worker w's thread and waits for it (w < 0 or the current worker: here).
void runOn(int w, const std::function<void()> &f) {
  if (w < 0 || w == current_worker || w >= static_cast<int>(workers.size())) {
    f();
    return;
  }
  auto &wk = *workers[w];
  std::promise<void> done;
  auto fut = done.get_future();
  {
    std::lock_guard<std::mutex> l(wk.mu);
    wk.tasks.emplace_back([&] {
      f();
      wk.drainPosted();
      done.set_value();
    });
  }
  wk.cv.notify_one();
  fut.wait();
}

void post(int w, std::function<void()> f) {
  if (w < 0 || w >= static_cast<int>(workers.size())) {
    f();
    return;
  }
  std::lock_guard<std::mutex> l(workers[w]->mu);
  workers[w]->posted.push_back(std::move(f));
}

// Per-stream state shared by the contexts of the chain.
struct Stream {
  Headers req_headers, req_trailers, resp_headers, resp_trailers;
  std::string req_body, resp_body;
  bool req_eos = false, resp_eos = false;
  std::string source_address = "127.0.0.1:40000";
  std::string destination_address = "127.0.0.1:10000";
  // The upstream host's address once the router called it (Envoy's upstream.*
  // properties; testenv's DefaultUpstreamAddress), empty before.
  std::string upstream_address;
  std::map<std::string, std::string> properties; // dotted path → raw bytes
  std::string request_id;
};

class DriverIntegration : public WasmVmIntegration {
public:
  WasmVmIntegration *clone() override { return new DriverIntegration{}; }
  LogLevel getLogLevel() override { return static_cast<LogLevel>(env.log_level); }
  void error(std::string_view message) override {
    env.errors.emplace_back(message);
    logLine(4, "", message, true);
  }
  void trace(std::string_view /*message*/) override {}
  bool getNullVmFunction(std::string_view, bool, int, NullPlugin *, void *) override {
    return false;
  }
};

class DriverContext;

class DriverWasm : public WasmBase {
public:
  // envs: the VM's environment (Envoy's vm_config.environment_variables), which
  // cpp-host's wasi environ_get serves; clones copy it from the base VM.
  DriverWasm(std::unique_ptr<WasmVm> vm, std::string_view vm_id, std::string_view vm_config,
             std::string_view vm_key, std::unordered_map<std::string, std::string> envs)
      : WasmBase(std::move(vm), vm_id, vm_config, vm_key, std::move(envs), {}) {}
  DriverWasm(const std::shared_ptr<WasmHandleBase> &base, const WasmVmFactory &factory)
      : WasmBase(base, factory) {}

  // The worker whose thread created this VM (-1: the base VM and the canary's clone).
  const int worker = current_worker;

  // Envoy cancels a VM's callouts and timers with it (the configuration canary's
  // clone is destroyed right after it configured).
  ~DriverWasm() override {
    env.calls.erase(std::remove_if(env.calls.begin(), env.calls.end(),
                                   [&](const PendingCall &c) { return c.wasm == this; }),
                    env.calls.end());
    env.timers.erase(std::remove_if(env.timers.begin(), env.timers.end(),
                                    [&](const Timer &t) { return t.wasm == this; }),
                     env.timers.end());
  }

  ContextBase *createVmContext() override;
  ContextBase *createRootContext(const std::shared_ptr<PluginBase> &plugin) override;
  ContextBase *createContext(const std::shared_ptr<PluginBase> &plugin) override;

  // Ticks: Envoy keeps one timer per root context (Wasm::setTimerPeriod).
  void setTimerPeriod(uint32_t root_context_id, std::chrono::milliseconds period) override {
    env.timers.erase(std::remove_if(env.timers.begin(), env.timers.end(),
                                    [&](const Timer &t) {
                                      return t.wasm == this && t.root_context_id == root_context_id;
                                    }),
                     env.timers.end());
    if (period.count() > 0) {
      env.timers.push_back(Timer{this, worker, root_context_id, static_cast<uint64_t>(period.count()),
                                 env.now_ms + static_cast<uint64_t>(period.count())});
    }
  }

  // Shared queues: onQueueReady runs on the thread of the VM that registered the queue
  // (Envoy's Wasm::callOnThreadFunction posts to that worker's dispatcher).
  CallOnThreadFunction callOnThreadFunction() override {
    int w = worker;
    return [w](const std::function<void()> &f) { post(w, f); };
  }

  void error(std::string_view message) override {
    env.errors.emplace_back(message);
    logLine(4, "", message, true);
  }
};

class DriverContext : public ContextBase {
public:
  explicit DriverContext(WasmBase *wasm) : ContextBase(wasm) {}
  DriverContext(WasmBase *wasm, const std::shared_ptr<PluginBase> &plugin)
      : ContextBase(wasm, plugin) {}
  DriverContext(WasmBase *wasm, uint32_t parent_context_id,
                std::shared_ptr<PluginHandleBase> &plugin_handle)
      : ContextBase(wasm, parent_context_id, plugin_handle) {
    setAllowStop(this, env.allow_on_headers_stop_iteration, 0);
  }

  // ContextBase::allow_on_headers_stop_iteration_ is on 52a0291 and 3930b7b, not on
  // 63cb9c1 (which always turns a headers StopIteration into StopAllIterationAndWatermark).
  template <typename C>
  static auto setAllowStop(C *c, bool v, int) -> decltype(c->allow_on_headers_stop_iteration_ = v, void()) {
    c->allow_on_headers_stop_iteration_ = v;
  }
  template <typename C> static void setAllowStop(C *, bool, long) {}

  // Envoy's Context destructor cancels the context's pending callouts.
  ~DriverContext() override {
    auto *w = wasm();
    auto cid = id();
    env.calls.erase(std::remove_if(env.calls.begin(), env.calls.end(),
                                   [&](const PendingCall &c) {
                                     return c.wasm == w && c.context_id == cid;
                                   }),
                    env.calls.end());
  }

  // Stream plumbing, set by the chain before each callback.
  Stream *stream = nullptr;
  bool hold_req_headers = false, hold_req_body = false, hold_req_trailers = false;
  bool hold_resp_headers = false, hold_resp_body = false, hold_resp_trailers = false;
  std::optional<LocalReply> local_reply;
  bool continue_request = false, continue_response = false;
  bool failed_stream = false, closed = false;
  // HTTP callout response during its callback.
  Headers *call_headers = nullptr;
  std::string *call_body = nullptr;

  std::string pluginName() const { return plugin_ ? plugin_->name_ : std::string(); }

  // The context holding a callout's response while its callback runs: the root context
  // (cpp-host's http_call dispatches from the caller's root context, and Envoy's
  // Context::getMap / getBuffer read rootContext()->http_call_response_, so a stream
  // made effective by the guest reads it too).
  DriverContext *callRoot() {
    auto *r = dynamic_cast<DriverContext *>(root_context());
    return r != nullptr ? r : this;
  }

  // cpp-host's ContextBase::error() aborts the process; Envoy's Context::error only
  // logs at trace level and returns (e.g. for wasi_unstable_proc_exit).
  void error(std::string_view message) override {
    env.errors.emplace_back(message);
    logLine(0, pluginName(), message);
  }

  WasmResult log(uint32_t level, std::string_view message) override {
    logLine(level, pluginName(), message);
    return WasmResult::Ok;
  }
  uint32_t getLogLevel() override { return env.log_level; }

  uint64_t getCurrentTimeNanoseconds() override {
    return env.start_unix_ns + env.now_ms * 1000000ULL;
  }
  uint64_t getMonotonicTimeNanoseconds() override {
    return 1000000000ULL + env.now_ms * 1000000ULL;
  }

  Headers *map(WasmHeaderMapType type) {
    switch (type) {
    case WasmHeaderMapType::RequestHeaders:
      return stream && hold_req_headers ? &stream->req_headers : nullptr;
    case WasmHeaderMapType::RequestTrailers:
      return stream && hold_req_trailers ? &stream->req_trailers : nullptr;
    case WasmHeaderMapType::ResponseHeaders:
      return stream && hold_resp_headers ? &stream->resp_headers : nullptr;
    case WasmHeaderMapType::ResponseTrailers:
      return stream && hold_resp_trailers ? &stream->resp_trailers : nullptr;
    case WasmHeaderMapType::HttpCallResponseHeaders:
      return callRoot()->call_headers;
    case WasmHeaderMapType::GrpcReceiveInitialMetadata:
    case WasmHeaderMapType::GrpcReceiveTrailingMetadata:
      return callRoot()->grpc_metadata;
    default:
      return nullptr;
    }
  }

  static bool readOnly(WasmHeaderMapType type) {
    return type == WasmHeaderMapType::HttpCallResponseHeaders ||
           type == WasmHeaderMapType::GrpcReceiveInitialMetadata ||
           type == WasmHeaderMapType::GrpcReceiveTrailingMetadata;
  }
  WasmResult addHeaderMapValue(WasmHeaderMapType type, std::string_view key,
                               std::string_view value) override {
    auto *m = map(type);
    if (m == nullptr || readOnly(type)) {
      return WasmResult::BadArgument;
    }
    addHeader(*m, type, lower(key), value);
    return WasmResult::Ok;
  }
  WasmResult getHeaderMapValue(WasmHeaderMapType type, std::string_view key,
                               std::string_view *result) override {
    auto *m = map(type);
    if (m == nullptr) {
      return WasmResult::BadArgument;
    }
    auto k = lower(key);
    for (const auto &p : *m) {
      if (p.first == k) {
        *result = p.second;
        return WasmResult::Ok;
      }
    }
    return WasmResult::NotFound;
  }
  WasmResult getHeaderMapPairs(WasmHeaderMapType type, Pairs *result) override {
    auto *m = map(type);
    if (m == nullptr) {
      return WasmResult::Ok; // Envoy: an absent map reads as empty
    }
    for (const auto &p : *m) {
      result->emplace_back(p.first, p.second);
    }
    return WasmResult::Ok;
  }
  WasmResult setHeaderMapPairs(WasmHeaderMapType type, const Pairs &pairs) override {
    auto *m = map(type);
    if (m == nullptr || readOnly(type)) {
      return WasmResult::BadArgument;
    }
    Headers copy;
    for (const auto &p : pairs) {
      addHeader(copy, type, lower(p.first), p.second);
    }
    *m = std::move(copy);
    return WasmResult::Ok;
  }
  WasmResult removeHeaderMapValue(WasmHeaderMapType type, std::string_view key) override {
    auto *m = map(type);
    if (m == nullptr || readOnly(type)) {
      return WasmResult::BadArgument;
    }
    removeHeader(*m, lower(key));
    return WasmResult::Ok;
  }
  WasmResult replaceHeaderMapValue(WasmHeaderMapType type, std::string_view key,
                                   std::string_view value) override {
    auto *m = map(type);
    if (m == nullptr || readOnly(type)) {
      return WasmResult::BadArgument;
    }
    auto k = lower(key);
    removeHeader(*m, k); // setCopy with http_set_copy_replace_all_headers
    insertHeader(*m, k, std::string(value));
    return WasmResult::Ok;
  }
  WasmResult getHeaderMapSize(WasmHeaderMapType type, uint32_t *result) override {
    auto *m = map(type);
    if (m == nullptr) {
      return WasmResult::BadArgument;
    }
    uint32_t n = 0;
    for (const auto &p : *m) {
      n += static_cast<uint32_t>(p.first.size() + p.second.size());
    }
    *result = n;
    return WasmResult::Ok;
  }

  std::string empty_;
  std::string config_copy_;
  std::unique_ptr<StringBuffer> buf_;
  BufferInterface *setBuf(std::string *s, bool mut) {
    buf_ = std::make_unique<StringBuffer>(s, mut);
    return buf_.get();
  }
  BufferInterface *getBuffer(WasmBufferType type) override {
    empty_.clear();
    switch (type) {
    case WasmBufferType::HttpRequestBody:
      if (stream && hold_req_body) {
        return setBuf(&stream->req_body, true);
      }
      return setBuf(&empty_, false);
    case WasmBufferType::HttpResponseBody:
      if (stream && hold_resp_body) {
        return setBuf(&stream->resp_body, true);
      }
      return setBuf(&empty_, false);
    case WasmBufferType::VmConfiguration:
      config_copy_ = std::string(wasm()->vm_configuration());
      return setBuf(&config_copy_, false);
    case WasmBufferType::PluginConfiguration:
      if (temp_plugin_) {
        config_copy_ = temp_plugin_->plugin_configuration_;
        return setBuf(&config_copy_, false);
      }
      return nullptr;
    case WasmBufferType::GrpcReceiveBuffer:
      if (auto *b = callRoot()->grpc_body; b != nullptr) {
        return setBuf(b, false);
      }
      return nullptr;
    case WasmBufferType::HttpCallResponseBody:
      if (auto *b = callRoot()->call_body; b != nullptr) {
        return setBuf(b, false);
      }
      return nullptr;
    default:
      return nullptr;
    }
  }
  bool endOfStream(WasmStreamType type) override {
    if (stream == nullptr) {
      return true;
    }
    return type == WasmStreamType::Request ? stream->req_eos : stream->resp_eos;
  }

  // Deferred like Envoy's Context::sendLocalResponse (an after-VM-call action); a second
  // reply in the same callback changes nothing.
  WasmResult sendLocalResponse(uint32_t response_code, std::string_view body, Pairs headers,
                               GrpcStatusCode grpc_status, std::string_view details) override {
    if (stream == nullptr) {
      return WasmResult::Ok;
    }
    if (local_reply) {
      return WasmResult::Ok;
    }
    LocalReply r;
    r.code = response_code;
    r.body = std::string(body);
    for (const auto &p : headers) {
      r.headers.emplace_back(lower(p.first), std::string(p.second));
    }
    r.grpc_status = static_cast<int64_t>(grpc_status);
    if (r.grpc_status == 0xFFFFFFFF || r.grpc_status < 0) {
      r.grpc_status = -1;
    }
    r.details = std::string(details);
    local_reply = std::move(r);
    return WasmResult::Ok;
  }
  WasmResult continueStream(WasmStreamType type) override {
    if (type == WasmStreamType::Request) {
      continue_request = true;
    } else if (type == WasmStreamType::Response) {
      continue_response = true;
    }
    return WasmResult::Ok;
  }
  WasmResult closeStream(WasmStreamType /*type*/) override {
    closed = true;
    return WasmResult::Ok;
  }
  void failStream(WasmStreamType /*type*/) override { failed_stream = true; }
  void clearRouteCache() override {}

  // Metrics (Envoy's stats scope: one value per name).
  WasmResult defineMetric(uint32_t type, std::string_view name, uint32_t *id) override {
    std::string n(name);
    for (size_t i = 0; i < env.metric_names.size(); i++) {
      if (env.metric_names[i] == n) {
        *id = static_cast<uint32_t>(i + 1);
        return WasmResult::Ok;
      }
    }
    env.metric_names.push_back(n);
    env.metrics[n] = Metric{type, n, 0};
    *id = static_cast<uint32_t>(env.metric_names.size());
    return WasmResult::Ok;
  }
  Metric *metric(uint32_t id) {
    if (id == 0 || id > env.metric_names.size()) {
      return nullptr;
    }
    return &env.metrics[env.metric_names[id - 1]];
  }
  WasmResult incrementMetric(uint32_t id, int64_t offset) override {
    auto *m = metric(id);
    if (m == nullptr) {
      return WasmResult::NotFound;
    }
    if (m->type == 2) {
      return WasmResult::BadArgument;
    }
    m->value += offset;
    return WasmResult::Ok;
  }
  WasmResult recordMetric(uint32_t id, uint64_t value) override {
    auto *m = metric(id);
    if (m == nullptr) {
      return WasmResult::NotFound;
    }
    if (m->type == 0) {
      m->value += static_cast<int64_t>(value);
    } else if (m->type == 1) {
      m->value = static_cast<int64_t>(value);
    } else {
      m->value++; // histograms: the number of samples
    }
    return WasmResult::Ok;
  }
  WasmResult getMetric(uint32_t id, uint64_t *value) override {
    auto *m = metric(id);
    if (m == nullptr) {
      return WasmResult::NotFound;
    }
    if (m->type == 2) {
      return WasmResult::BadArgument;
    }
    *value = static_cast<uint64_t>(m->value);
    return WasmResult::Ok;
  }

  // HTTP callouts: answered from the scenario after the current callback.
  WasmResult httpCall(std::string_view target, const Pairs &request_headers,
                      std::string_view request_body, const Pairs &request_trailers,
                      int timeout_ms, uint32_t *token_ptr) override {
    std::string cluster(target);
    if (std::find(env.known_clusters.begin(), env.known_clusters.end(), cluster) ==
        env.known_clusters.end()) {
      return WasmResult::BadArgument;
    }
    PendingCall c;
    c.token = env.next_token++;
    c.context_id = id();
    c.wasm = wasm();
    c.worker = current_worker;
    c.cluster = cluster;
    bool method = false, path = false, authority = false;
    for (const auto &p : request_headers) {
      method |= p.first == ":method";
      path |= p.first == ":path";
      authority |= p.first == ":authority";
      c.headers.emplace_back(std::string(p.first), std::string(p.second));
    }
    if (!method || !path || !authority) {
      return WasmResult::BadArgument;
    }
    c.body = std::string(request_body);
    *token_ptr = c.token;
    env.calls.push_back(std::move(c));
    recordSent({{"kind", "http"}, {"cluster", cluster}, {"headers", pairsJSON(request_headers)},
                {"body_hex", toHex(request_body)}, {"trailers", pairsJSON(request_trailers)},
                {"timeout_ms", timeout_ms}});
    return WasmResult::Ok;
  }

  // newGrpcCall is a pending gRPC call (stream false: odd tokens) or stream (even
  // tokens) of this context to cluster, its :path the service and method.
  PendingCall newGrpcCall(const std::string &cluster, std::string_view service_name,
                          std::string_view method_name, bool stream) {
    PendingCall c;
    c.grpc = true;
    c.stream = stream;
    auto &next = stream ? env.next_stream_token : env.next_grpc_token;
    c.token = next;
    next += 2;
    c.context_id = id();
    c.wasm = wasm();
    c.worker = current_worker;
    c.cluster = cluster;
    c.headers.emplace_back(":path", "/" + std::string(service_name) + "/" + std::string(method_name));
    return c;
  }

  // gRPC calls (unary), answered from the scenario after the current callback. The
  // service is a cluster the scenario answers for (as a raw cluster name: Envoy's
  // Context::grpcCall treats bytes that are not a GrpcService as one); cpp-host's
  // grpc_call export dispatches from the caller's root context.
  WasmResult grpcCall(std::string_view grpc_service, std::string_view service_name,
                      std::string_view method_name, const Pairs &initial_metadata,
                      std::string_view request, std::chrono::milliseconds timeout,
                      GrpcToken *token_ptr) override {
    std::string cluster(grpc_service);
    if (!env.grpc_callouts.contains(cluster)) {
      return WasmResult::ParseFailure;
    }
    PendingCall c = newGrpcCall(cluster, service_name, method_name, false);
    c.body = std::string(request);
    *token_ptr = c.token;
    env.calls.push_back(std::move(c));
    recordSent({{"kind", "grpc"}, {"cluster", cluster}, {"service", std::string(service_name)},
                {"method", std::string(method_name)}, {"headers", pairsJSON(initial_metadata)},
                {"body_hex", toHex(request)}, {"timeout_ms", timeout.count()}});
    return WasmResult::Ok;
  }
  // gRPC streams (Envoy's Context::grpcStream / grpcSend / grpcClose / grpcCancel),
  // answered from the scenario after the current callback, one callback at a time.
  WasmResult grpcStream(std::string_view grpc_service, std::string_view service_name,
                        std::string_view method_name, const Pairs &initial_metadata,
                        GrpcToken *token_ptr) override {
    std::string cluster(grpc_service);
    if (!env.grpc_callouts.contains(cluster)) {
      return WasmResult::ParseFailure;
    }
    PendingCall c = newGrpcCall(cluster, service_name, method_name, true);
    *token_ptr = c.token;
    env.calls.push_back(std::move(c));
    recordSent({{"kind", "grpc_stream"}, {"cluster", cluster}, {"service", std::string(service_name)},
                {"method", std::string(method_name)}, {"headers", pairsJSON(initial_metadata)}});
    return WasmResult::Ok;
  }
  PendingCall *findCall(uint32_t token) {
    auto *w = wasm();
    auto it = std::find_if(env.calls.begin(), env.calls.end(), [&](const PendingCall &c) {
      return c.grpc && c.wasm == w && c.token == token;
    });
    return it == env.calls.end() ? nullptr : &*it;
  }
  WasmResult grpcSend(uint32_t token, std::string_view message, bool end_stream) override {
    if (token % 2 == 1) {
      return WasmResult::BadArgument; // a call's token
    }
    auto *c = findCall(token);
    if (c == nullptr) {
      return WasmResult::NotFound;
    }
    c->local_closed = c->local_closed || end_stream;
    recordSent({{"kind", "grpc_send"}, {"cluster", c->cluster}, {"body_hex", toHex(message)},
                {"end_stream", end_stream}});
    return WasmResult::Ok;
  }
  // Cancel on a call, reset on a stream: no more callbacks.
  WasmResult grpcCancel(uint32_t token) override { return dropCall(token); }
  // Cancel on a call; on a stream, close our side: the peer's answer still arrives.
  WasmResult grpcClose(uint32_t token) override {
    auto *c = findCall(token);
    if (c != nullptr && c->stream) {
      c->local_closed = true;
      return WasmResult::Ok;
    }
    return dropCall(token);
  }
  WasmResult dropCall(uint32_t token) {
    auto *c = findCall(token);
    if (c == nullptr) {
      return WasmResult::NotFound;
    }
    env.calls.erase(env.calls.begin() + (c - env.calls.data()));
    return WasmResult::Ok;
  }
  // The metadata of a gRPC stream while its metadata callback runs.
  Headers *grpc_metadata = nullptr;
  // The message of a gRPC call's answer while proxy_on_grpc_receive runs (read through
  // the root context, as Envoy's rootContext()->grpc_receive_buffer_).
  std::string *grpc_body = nullptr;

  // proxy_get_status: set while a failed callout's callback runs.
  uint32_t status_code = 0;
  std::string status_message;
  std::pair<uint32_t, std::string_view> getStatus() override {
    return {status_code, status_message};
  }

  // Properties, as Envoy's Context::findValue: the path's segments are separated by NUL.
  static void i64(std::string *out, int64_t v) {
    out->assign(reinterpret_cast<const char *>(&v), sizeof(v));
  }
  static WasmResult joined(const Headers &m, const std::string &name, std::string *out) {
    bool found = false;
    out->clear();
    for (const auto &p : m) {
      if (p.first == name) {
        if (found) {
          out->push_back(',');
        }
        out->append(p.second);
        found = true;
      }
    }
    return found ? WasmResult::Ok : WasmResult::NotFound;
  }
  static WasmResult address(const std::string &addr, const std::string &field, std::string *out) {
    auto colon = addr.rfind(':');
    if (field == "address") {
      *out = addr;
      return WasmResult::Ok;
    }
    if (field == "port" && colon != std::string::npos) {
      i64(out, std::stoll(addr.substr(colon + 1)));
      return WasmResult::Ok;
    }
    return WasmResult::NotFound;
  }
  WasmResult getProperty(std::string_view path, std::string *result) override {
    std::vector<std::string> seg;
    std::string dotted;
    {
      size_t start = 0;
      while (true) {
        auto nul = path.find('\0', start);
        seg.emplace_back(path.substr(start, nul == std::string_view::npos ? nul : nul - start));
        if (nul == std::string_view::npos) {
          break;
        }
        start = nul + 1;
      }
      for (size_t i = 0; i < seg.size(); i++) {
        dotted += (i ? "." : "") + seg[i];
      }
    }
    if (stream != nullptr) {
      auto it = stream->properties.find(dotted);
      if (it != stream->properties.end()) {
        *result = it->second;
        return WasmResult::Ok;
      }
    }
    auto *p = plugin_.get();
    const std::string &top = seg[0];
    if (seg.size() == 1 && p != nullptr) {
      if (top == "plugin_name") {
        *result = p->name_;
        return WasmResult::Ok;
      }
      if (top == "plugin_root_id") {
        *result = p->root_id_;
        return WasmResult::Ok;
      }
      if (top == "plugin_vm_id") {
        *result = p->vm_id_;
        return WasmResult::Ok;
      }
    }
    if (top == "xds" && seg.size() == 3 && seg[1] == "node" && seg[2] == "id" && !env.node_id.empty()) {
      *result = env.node_id;
      return WasmResult::Ok;
    }
    if (stream != nullptr && seg.size() == 1 && top == "connection_id") {
      i64(result, 1);
      return WasmResult::Ok;
    }
    if (stream != nullptr && seg.size() == 2 && top == "connection") {
      if (seg[1] == "id") { // Envoy: the connection's id (uint64)
        i64(result, 1);
        return WasmResult::Ok;
      }
      if (seg[1] == "mtls") { // Envoy: a bool, false on a plain-text connection
        *result = std::string(1, '\0');
        return WasmResult::Ok;
      }
    }
    if (stream == nullptr || seg.size() < 2) {
      return WasmResult::NotFound;
    }
    const std::string &field = seg[1];
    if (top == "source") {
      return address(stream->source_address, field, result);
    }
    if (top == "destination") {
      return address(stream->destination_address, field, result);
    }
    if (top == "upstream" && !stream->upstream_address.empty()) {
      return address(stream->upstream_address, field, result);
    }
    if (top == "request") {
      if (field == "protocol") {
        *result = "HTTP/1.1";
        return WasmResult::Ok;
      }
      if (field == "time") {
        i64(result, static_cast<int64_t>(getCurrentTimeNanoseconds()));
        return WasmResult::Ok;
      }
      if (!hold_req_headers) {
        return WasmResult::NotFound;
      }
      const auto &h = stream->req_headers;
      if (field == "path") {
        return joined(h, ":path", result);
      }
      if (field == "url_path" || field == "query") {
        std::string pth;
        joined(h, ":path", &pth);
        auto q = pth.find('?');
        *result = field == "query" ? (q == std::string::npos ? "" : pth.substr(q + 1))
                                   : pth.substr(0, q);
        return WasmResult::Ok;
      }
      if (field == "host") {
        return joined(h, ":authority", result);
      }
      if (field == "scheme") {
        return joined(h, ":scheme", result);
      }
      if (field == "method") {
        return joined(h, ":method", result);
      }
      if (field == "useragent") {
        return joined(h, "user-agent", result);
      }
      if (field == "referer") {
        return joined(h, "referer", result);
      }
      if (field == "id") {
        if (joined(h, "x-request-id", result) == WasmResult::Ok) {
          return WasmResult::Ok;
        }
        if (stream->request_id.empty()) {
          stream->request_id = "cpphost-" + std::to_string(env.next_token++);
        }
        *result = stream->request_id;
        return WasmResult::Ok;
      }
      if (field == "headers" && seg.size() == 3) {
        return joined(h, lower(seg[2]), result);
      }
    }
    if (top == "response" && hold_resp_headers) {
      if (field == "code") {
        std::string code;
        joined(stream->resp_headers, ":status", &code);
        i64(result, std::stoll(code.empty() ? "0" : code));
        return WasmResult::Ok;
      }
      if (field == "headers" && seg.size() == 3) {
        return joined(stream->resp_headers, lower(seg[2]), result);
      }
    }
    return WasmResult::NotFound;
  }
  WasmResult setProperty(std::string_view key, std::string_view value) override {
    if (stream == nullptr) {
      return WasmResult::NotFound;
    }
    std::string k(key);
    std::replace(k.begin(), k.end(), '\0', '.');
    stream->properties[k] = std::string(value);
    return WasmResult::Ok;
  }
};

ContextBase *DriverWasm::createVmContext() { return new DriverContext(this); }
ContextBase *DriverWasm::createRootContext(const std::shared_ptr<PluginBase> &plugin) {
  return new DriverContext(this, plugin);
}
ContextBase *DriverWasm::createContext(const std::shared_ptr<PluginBase> &plugin) {
  return new DriverContext(this, plugin);
}

std::shared_ptr<WasmHandleBase> cloneWasm(const std::shared_ptr<WasmHandleBase> &base) {
  auto wasm = std::make_shared<DriverWasm>(base, [] {
    auto vm = createWamrVm();
    vm->integration() = std::make_unique<DriverIntegration>();
    return vm;
  });
  return std::make_shared<WasmHandleBase>(wasm);
}

struct PluginSlot {
  std::shared_ptr<PluginBase> plugin;
  std::shared_ptr<WasmHandleBase> base;
  std::vector<std::shared_ptr<PluginHandleBase>> locals; // per worker (thread-local plugin)
  std::string load_error;
  std::string vm_key, code; // for a Reconfigure's createWasm
  std::function<std::shared_ptr<WasmHandleBase>(std::string_view)> factory;
  // Envoy's failure_policy FAIL_RELOAD (1.34+) and reload_config.backoff.base_interval.
  bool fail_reload = false;
  uint64_t reload_backoff_ms = 1000;
  std::vector<uint64_t> last_load; // per worker: when its plugin handle was last (re)loaded
};

std::shared_ptr<PluginHandleBase> threadLocalPlugin(const std::shared_ptr<WasmHandleBase> &base,
                                                    const std::shared_ptr<PluginBase> &plugin) {
  return getOrCreateThreadLocalPlugin(
      base, plugin, cloneWasm,
      [](std::shared_ptr<WasmHandleBase> wh, std::shared_ptr<PluginBase> pl) {
        return std::make_shared<PluginHandleBase>(wh, pl);
      });
}

// maybeReload is Envoy's PluginConfig::maybeReloadHandleIfNeeded, run on the worker when
// a stream is to get a context of the plugin: with FAIL_RELOAD, a VM that failed with a
// runtime error is replaced once the backoff since the handle's last load elapsed (the
// load time is updated either way). cpp-host's thread-local caches dropped the failed VM
// and plugin (the fail callbacks of getOrCreateThreadLocalWasm / Plugin), so
// getOrCreateThreadLocalPlugin clones a new VM from the base VM and starts and configures
// the plugin there. Envoy draws the backoff from JitteredLowerBoundBackOffStrategy
// (base_interval plus up to half of it); the driver waits exactly base_interval, as
// testenv does.
void maybeReload(PluginSlot &slot) {
  auto w = static_cast<size_t>(current_worker);
  auto &local = slot.locals[w];
  if (!slot.fail_reload || !slot.base || !local ||
      local->wasm()->fail_state() != FailState::RuntimeError) {
    return;
  }
  if (env.now_ms - slot.last_load[w] < slot.reload_backoff_ms) {
    return;
  }
  slot.last_load[w] = env.now_ms;
  auto fresh = threadLocalPlugin(slot.base, slot.plugin);
  if (fresh && !fresh->wasm()->isFailed()) {
    local = fresh;
  }
}

std::string readFile(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string contentType(const Headers &h) {
  for (const auto &p : h) {
    if (p.first == "content-type") {
      return p.second;
    }
  }
  return "";
}

// application/grpc and application/grpc+proto — not grpc-web, nor
// application/grpc;charset=… (Envoy's Grpc::Common::isGrpcRequestHeaders →
// hasGrpcContentType: exactly application/grpc, or followed by '+').
bool isGrpc(const Headers &h) {
  auto ct = contentType(h);
  if (ct.rfind("application/grpc", 0) != 0) {
    return false;
  }
  auto rest = ct.substr(16);
  return rest.empty() || rest[0] == '+';
}

// Envoy's Grpc::Utility::httpToGrpcStatus.
int64_t grpcStatusForHTTP(uint32_t code) {
  switch (code) {
  case 200:
    return 0;
  case 400:
    return 13;
  case 401:
    return 16;
  case 403:
    return 7;
  case 404:
    return 12;
  case 429:
  case 502:
  case 503:
  case 504:
    return 14;
  }
  return 2;
}

// grpc-message percent-encoding (gRPC's PROTOCOL-HTTP2: bytes outside 0x20–0x7E and '%').
std::string grpcPercentEncode(const std::string &s) {
  static const char *hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7E || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string unhex(const std::string &h) {
  auto nib = [](char c) -> int {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c - 'A' + 10;
  };
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) {
    out.push_back(static_cast<char>(nib(h[i]) << 4 | nib(h[i + 1])));
  }
  return out;
}

// The context a callout's answer goes to: the one that made it, else its VM's root
// context.
DriverContext *calloutContext(const PendingCall &call) {
  auto *ctx = dynamic_cast<DriverContext *>(call.wasm->getContext(call.context_id));
  if (ctx == nullptr) {
    ctx = dynamic_cast<DriverContext *>(call.wasm->getRootContext(nullptr, true));
  }
  return ctx;
}

// The status a unary gRPC call's answer closes it with: the scenario's code and message,
// or for a "timeout" failure what Envoy's async client reports once the call's timeout
// passed: its router answers 504 "upstream request timeout" (Router::Filter::
// onUpstreamTimeoutAbort), which a gRPC request gets as grpc-status 14 (UNAVAILABLE,
// Grpc::Utility::httpToGrpcStatus) with that message.
std::pair<uint32_t, std::string> grpcStatusOf(const json &a) {
  if (a.value("failure", "") == "timeout") {
    return {14, "upstream request timeout"};
  }
  return {a.value("code", 0U), a.value("message", "")};
}

// deliverStreamEvent runs the next callback of gRPC stream pc (Envoy's
// Grpc::AsyncStreamImpl order, through Context::onGrpcReceiveInitialMetadata /
// onGrpcReceive / onGrpcReceiveTrailingMetadata / onGrpcClose): initial metadata, each
// message, trailing metadata, then the close with the answer's status (proxy_get_status
// gives its message). One callback per call, so a proxy_grpc_cancel from one stops the
// rest.
void deliverStreamEvent(PendingCall &pc) {
  PendingCall call = pc; // pc moves if the callback makes a callout
  size_t stage = pc.stage++;
  const json a = env.grpc_callouts[call.cluster];
  std::vector<std::string> msgs;
  for (const auto &m : a.value("messages_hex", json::array())) {
    msgs.push_back(unhex(m.get<std::string>()));
  }
  auto erase = [&] {
    env.calls.erase(std::remove_if(env.calls.begin(), env.calls.end(),
                                   [&](const PendingCall &c) {
                                     return c.grpc && c.wasm == call.wasm && c.token == call.token;
                                   }),
                    env.calls.end());
  };
  auto *ctx = calloutContext(call);
  if (ctx == nullptr) {
    erase();
    return;
  }
  if (stage == 0 || stage == msgs.size() + 1) {
    Headers md = headersFrom(a.value(stage == 0 ? "initial_metadata" : "trailing_metadata", json::array()));
    ctx->grpc_metadata = &md;
    if (stage == 0) {
      ctx->onGrpcReceiveInitialMetadata(call.token, static_cast<uint32_t>(md.size()));
    } else {
      ctx->onGrpcReceiveTrailingMetadata(call.token, static_cast<uint32_t>(md.size()));
    }
    ctx->grpc_metadata = nullptr;
    return;
  }
  if (stage <= msgs.size()) {
    std::string m = msgs[stage - 1];
    ctx->grpc_body = &m;
    ctx->onGrpcReceive(call.token, static_cast<uint32_t>(m.size()));
    ctx->grpc_body = nullptr;
    return;
  }
  erase();
  auto [code, message] = grpcStatusOf(a);
  ctx->status_code = code;
  ctx->status_message = message;
  ctx->onGrpcClose(call.token, static_cast<GrpcStatusCode>(code));
  ctx->status_code = 0;
  ctx->status_message.clear();
}

// Answers every pending callout of the current thread's VMs from the scenario and runs
// its callback on the context that made it.
void deliverCallouts() {
  while (true) {
    auto it = std::find_if(env.calls.begin(), env.calls.end(),
                           [](const PendingCall &c) { return c.worker == current_worker; });
    if (it == env.calls.end()) {
      return;
    }
    if (it->stream) {
      deliverStreamEvent(*it);
      continue;
    }
    auto call = *it;
    env.calls.erase(it);
    auto *ctx = calloutContext(call);
    if (ctx == nullptr) {
      continue;
    }
    if (call.grpc) {
      // Success: proxy_on_grpc_receive with the message only; failure:
      // proxy_on_grpc_close with the status, its message in proxy_get_status (Envoy's
      // Context::onGrpcReceive / onGrpcClose for a unary call).
      const auto &a = env.grpc_callouts[call.cluster];
      auto [code, message] = grpcStatusOf(a);
      if (code == 0) {
        std::string msg = unhex(a.value("response_hex", ""));
        ctx->grpc_body = &msg;
        ctx->onGrpcReceive(call.token, static_cast<uint32_t>(msg.size()));
        ctx->grpc_body = nullptr;
      } else {
        ctx->status_code = code;
        ctx->status_message = message;
        ctx->onGrpcClose(call.token, static_cast<GrpcStatusCode>(code));
        ctx->status_code = 0;
        ctx->status_message.clear();
      }
      continue;
    }
    Headers h;
    std::string body;
    // Envoy's async client: a timeout is the router's 504 local reply, a refused or
    // dropped connection its 503 (both go to onSuccess, testenv's localHTTP); a reset
    // after the response headers is onFailure: Context::onHttpCallFailure calls
    // proxy_on_http_call_response(token, 0, 0, 0) with status BrokenConnection "reset".
    std::string failure;
    if (env.callouts.contains(call.cluster)) {
      failure = env.callouts[call.cluster].value("failure", "");
    }
    auto local = [&](int code, const std::string &b) {
      h.emplace_back(":status", std::to_string(code));
      h.emplace_back("content-length", std::to_string(b.size()));
      h.emplace_back("content-type", "text/plain");
      body = b;
    };
    if (failure == "reset") {
      ctx->status_code = static_cast<uint32_t>(WasmResult::BrokenConnection);
      ctx->status_message = "reset";
      ctx->onHttpCallResponse(call.token, 0, 0, 0);
      ctx->status_code = 0;
      ctx->status_message.clear();
      continue;
    }
    if (failure == "timeout") {
      local(504, "upstream request timeout");
    } else if (failure == "connect") {
      local(503, "upstream connect error or disconnect/reset before headers. reset reason: "
                 "connection failure");
    } else if (env.callouts.contains(call.cluster)) {
      const auto &a = env.callouts[call.cluster];
      h.emplace_back(":status", std::to_string(a.value("status", 200)));
      for (const auto &p : headersFrom(a.value("headers", json::array()))) {
        if (p.first != "content-length") {
          h.push_back(p);
        }
      }
      body = a.value("body", "");
      // An HTTP/1.1 upstream's answer carries its length (testenv's server sends it).
      h.emplace_back("content-length", std::to_string(body.size()));
    } else {
      h.emplace_back(":status", "503"); // the router's local reply for no healthy upstream
    }
    ctx->call_headers = &h;
    ctx->call_body = &body;
    ctx->onHttpCallResponse(call.token, static_cast<uint32_t>(h.size()),
                            static_cast<uint32_t>(body.size()), 0);
    ctx->call_headers = nullptr;
    ctx->call_body = nullptr;
  }
}

// settle runs, on each worker's thread, what other workers posted to it and the answers
// to its callouts in flight, until nothing is left (bounded: a guest that keeps
// re-posting stops after 1000 rounds).
void settle() {
  deliverCallouts(); // the main thread's VMs (base / canary)
  for (int round = 0; round < 1000; round++) {
    bool any = false;
    for (auto &wk : workers) {
      int w = wk->id;
      bool calls = std::any_of(env.calls.begin(), env.calls.end(),
                               [w](const PendingCall &c) { return c.worker == w; });
      if (calls || wk->hasPosted()) {
        any = true;
        runOn(w, [] { deliverCallouts(); });
      }
    }
    if (!any) {
      return;
    }
  }
}

// Envoy's per_connection_buffer_limit_bytes default (1 MiB): the most a filter may
// buffer (StopIterationAndBuffer) before the filter manager answers 413 / 500
// (FilterManager's requestDataTooLarge / responseDataTooLarge).
constexpr size_t kBufferLimit = 1 << 20;
// A body sent in one piece reaches the filters in 16 KiB chunks, one per HTTP/2 DATA
// frame of the default SETTINGS_MAX_FRAME_SIZE (testenv's DefaultChunkSize).
constexpr size_t kChunk = 16 << 10;

std::vector<std::string> cut(const std::string &body) {
  std::vector<std::string> out;
  for (size_t off = 0; off < body.size(); off += kChunk) {
    out.push_back(body.substr(off, kChunk));
  }
  return out;
}

// How one plugin's body and trailers callbacks of one direction ended.
enum class BodyEnd {
  Passed,   // everything went on (in the chunks left for the next plugin)
  Stopped,  // the caller's stop check said so (a local reply, a failed VM)
  Paused,   // the plugin holds the end of the stream (request only)
  TooLarge, // the plugin buffered more than the buffer limit
};

// passBody runs plugin c's body callbacks of one direction over chunks as they come,
// then its trailers callback, and leaves in chunks what the plugin passes on. A body
// Pause buffers (StopIterationAndBuffer: the next callback sees the buffered body plus
// the new chunk, Envoy's Context::getBuffer on the encoding / decoding buffer) up to
// the buffer limit; trailers end the body, and a Continue from them sends the buffered
// body on. *headers_held says whether the plugin holds its headers (a headers Pause with
// allow_on_headers_stop_iteration: the header map stays writable); a Continue from a
// body or trailers callback sends them on (FilterManager's commonContinue). On the
// response, a Pause of the end of the stream passes it on (the driver does not model a
// response that never ends). stop runs after each callback.
BodyEnd passBody(DriverContext *c, Stream &s, bool request, std::vector<std::string> &chunks,
                 bool *headers_held, const std::function<bool()> &stop) {
  auto &body = request ? s.req_body : s.resp_body;
  auto &eos = request ? s.req_eos : s.resp_eos;
  const auto &trailers = request ? s.req_trailers : s.resp_trailers;
  auto &hold_headers = request ? c->hold_req_headers : c->hold_resp_headers;
  auto &hold_body = request ? c->hold_req_body : c->hold_resp_body;
  auto &hold_trailers = request ? c->hold_req_trailers : c->hold_resp_trailers;
  auto &cont = request ? c->continue_request : c->continue_response;
  auto release = [&] {
    cont = false;
    *headers_held = false;
    hold_headers = false;
  };
  std::vector<std::string> next; // what this plugin passes on
  std::string pending;
  bool holding = false;
  for (size_t k = 0; k < chunks.size(); k++) {
    bool last = k + 1 == chunks.size() && trailers.empty();
    pending += chunks[k];
    body = pending;
    eos = last;
    hold_headers = *headers_held;
    hold_body = true;
    auto size = static_cast<uint32_t>(body.size());
    auto st = request ? c->onRequestBody(size, last) : c->onResponseBody(size, last);
    hold_body = false;
    if (stop()) {
      return BodyEnd::Stopped;
    }
    if (st == FilterDataStatus::Continue || cont) {
      next.push_back(body); // what goes on, as the plugin left it
      pending.clear();
      holding = false;
      release();
      continue;
    }
    pending = body;
    holding = true;
    if (pending.size() > kBufferLimit) {
      return BodyEnd::TooLarge;
    }
    if (last) {
      if (request) {
        return BodyEnd::Paused;
      }
      next.push_back(pending);
      pending.clear();
      holding = false;
      release();
    }
  }
  if (!trailers.empty()) {
    eos = true;
    hold_headers = *headers_held;
    hold_trailers = true;
    auto n = static_cast<uint32_t>(trailers.size());
    auto st = request ? c->onRequestTrailers(n) : c->onResponseTrailers(n);
    hold_trailers = false;
    if (stop()) {
      return BodyEnd::Stopped;
    }
    if (st == FilterTrailersStatus::Continue || cont || !request) {
      if (holding) {
        next.push_back(pending);
      }
      release();
    } else {
      return BodyEnd::Paused;
    }
  }
  hold_headers = false;
  chunks = std::move(next);
  return BodyEnd::Passed;
}

// encodeReply writes the local reply r as the client gets it: the HTTP connection
// manager's encoding (Utility::sendLocalReply), modelled as testenv's applyLocal does.
void encodeReply(const LocalReply &r, bool grpc, Headers &h, std::string &body) {
  h.clear();
  if (grpc) {
    int64_t gs = r.grpc_status;
    if (gs < 0 || gs > 16) {
      gs = grpcStatusForHTTP(r.code);
    }
    h.emplace_back(":status", "200");
    h.emplace_back("content-type", "application/grpc");
    h.emplace_back("grpc-status", std::to_string(gs));
    if (!r.body.empty()) {
      h.emplace_back("grpc-message", grpcPercentEncode(r.body));
    }
    for (const auto &p : r.headers) {
      h.push_back(p);
    }
    body.clear();
    return;
  }
  h.emplace_back(":status", std::to_string(r.code));
  for (const auto &p : r.headers) {
    h.push_back(p);
  }
  body = r.body;
  if (!body.empty()) {
    h.emplace_back("content-length", std::to_string(body.size()));
    if (contentType(h).empty()) {
      h.emplace_back("content-type", "text/plain");
    }
  }
}

// Runs one request through the chain; returns what the client got.
void advance(uint64_t ms);

json runRequest(std::vector<PluginSlot> &slots, const json &req, const json &upstream) {
  // clock_step_ms: the scripted clock moves this far while the request is in flight:
  // when a plugin pauses it at its headers (e.g. waiting for a tick, as fault's delay
  // does), else once it completed.
  uint64_t clock_step = req.value("clock_step_ms", 0ULL);
  Stream s;
  // The order Envoy's HTTP/1 codec and connection manager leave them in (testenv's too).
  s.req_headers.emplace_back(":method", req.value("method", "GET"));
  s.req_headers.emplace_back(":path", req.value("path", "/"));
  s.req_headers.emplace_back(":authority", req.value("authority", "example.com"));
  s.req_headers.emplace_back(":scheme", req.value("scheme", "http"));
  for (const auto &p : headersFrom(req.value("headers", json::array()))) {
    s.req_headers.push_back(p);
  }
  std::vector<std::string> chunks;
  if (req.contains("body_chunks")) {
    for (const auto &c : req["body_chunks"]) {
      chunks.push_back(c.get<std::string>());
    }
  } else if (req.contains("body")) {
    chunks = cut(req["body"].get<std::string>());
  }
  s.req_trailers = headersFrom(req.value("trailers", json::array()));
  if (req.contains("source_address")) {
    s.source_address = req["source_address"].get<std::string>();
  }
  const json props = req.value("properties", json::object()); // outlives the loop
  for (auto &[k, v] : props.items()) {
    s.properties[k] = v.get<std::string>();
  }

  json out = {{"local_reply", false}, {"reset", false}, {"upstream", nullptr}};
  std::vector<DriverContext *> ctxs;
  std::optional<LocalReply> reply;
  bool failed = false;

  auto finishReply = [&](DriverContext *c) {
    if (c->local_reply && !reply) {
      reply = c->local_reply;
    }
    c->local_reply.reset();
  };

  // Envoy's Context::failStream with the plugin failing closed.
  auto vmFailed = [&](DriverContext *c, size_t i) {
    if (!c->failed_stream && !c->isFailed()) {
      return false;
    }
    if (slots[i].plugin->fail_open_) {
      return false;
    }
    // Envoy's Context::failStream: sendLocalReply(503, "", …, Unavailable,
    // "wasm_fail_stream") whatever the request.
    LocalReply r;
    r.code = 503;
    r.details = "wasm_fail_stream";
    r.grpc_status = 14;
    reply = r;
    failed = true;
    return true;
  };

  bool stopped = false;
  for (size_t i = 0; i < slots.size() && !stopped; i++) {
    auto &slot = slots[i];
    maybeReload(slot);
    auto &local = slot.locals[static_cast<size_t>(current_worker)];
    if (!local) {
      continue;
    }
    auto *root = local->wasm()->getRootContext(slot.plugin, false);
    if (root == nullptr) {
      if (!slot.plugin->fail_open_) {
        LocalReply r;
        r.code = 503;
        r.details = "wasm_fail_stream";
        r.grpc_status = 14;
        reply = r;
        failed = true;
        break;
      }
      continue;
    }
    auto *c = new DriverContext(local->wasm().get(), root->id(), local);
    c->stream = &s;
    ctxs.push_back(c);
    c->onCreate();
    bool eos = chunks.empty() && s.req_trailers.empty();
    s.req_eos = eos;
    c->hold_req_headers = true;
    auto st = c->onRequestHeaders(static_cast<uint32_t>(s.req_headers.size()), eos);
    if (vmFailed(c, i)) {
      break;
    }
    deliverCallouts();
    if (vmFailed(c, i)) {
      break;
    }
    finishReply(c);
    if (reply) {
      break;
    }
    if (st != FilterHeadersStatus::Continue && !c->continue_request && clock_step > 0) {
      // Ticks run as the clock moves (on this worker: here); the plugin may resume the
      // stream or answer it from one.
      advance(clock_step);
      clock_step = 0;
      deliverCallouts();
      if (vmFailed(c, i)) {
        break;
      }
      finishReply(c);
      if (reply) {
        break;
      }
    }
    // A headers Pause is StopAllIterationAndWatermark (cpp-host's
    // convertVmCallResultToFilterHeadersStatus) unless allow_on_headers_stop_iteration
    // keeps it StopIteration: then the body still comes to the plugin, which holds the
    // headers until a body or trailers callback continues.
    bool held = st != FilterHeadersStatus::Continue && !c->continue_request;
    if (held && (st != FilterHeadersStatus::StopIteration || eos)) {
      out["paused"] = true;
      stopped = true;
      break;
    }
    c->hold_req_headers = false;
    c->continue_request = false;
    auto end = passBody(c, s, true, chunks, &held, [&] {
      if (vmFailed(c, i)) {
        return true;
      }
      finishReply(c);
      return reply.has_value();
    });
    if (end == BodyEnd::TooLarge) {
      LocalReply r;
      r.code = 413;
      r.body = "Payload Too Large";
      r.details = "request_payload_too_large";
      reply = r;
      break;
    }
    if (end == BodyEnd::Stopped) {
      break;
    }
    if (end == BodyEnd::Paused || held) {
      out["paused"] = true;
      stopped = true;
      break;
    }
  }

  if (!reply && !stopped) {
    // The upstream.
    std::string body;
    for (const auto &c : chunks) {
      body += c;
    }
    out["upstream"] = {{"headers", headersJSON(s.req_headers)}, {"body", body}};
    s.upstream_address = "127.0.0.1:8080";
    if (!s.req_trailers.empty()) {
      out["upstream"]["trailers"] = headersJSON(s.req_trailers);
    }
    s.resp_headers.clear();
    s.resp_headers.emplace_back(":status", std::to_string(upstream.value("status", 200)));
    for (const auto &p : headersFrom(upstream.value("headers", json::array()))) {
      s.resp_headers.push_back(p);
    }
    s.resp_body = upstream.value("body", "");
    s.resp_trailers = headersFrom(upstream.value("trailers", json::array()));
  }
  if (reply) {
    // The reply's encoding is Envoy's HTTP connection manager (Utility::sendLocalReply),
    // not cpp-host: modelled as testenv does (testenv/stream.go applyLocal), so this
    // part is not an independent check. It goes through the encoder path of the
    // filters whose contexts exist.
    out["local_reply"] = true;
    out["details"] = reply->details;
    if (reply->grpc_status >= 0) {
      out["grpc_status"] = reply->grpc_status;
    }
    encodeReply(*reply, isGrpc(s.req_headers), s.resp_headers, s.resp_body);
  }
  std::vector<std::string> rchunks = cut(s.resp_body);
  bool reset = false;
  if (stopped) {
    rchunks.clear();
  } else {
    // Response path, reverse order: the headers through every plugin, then the body
    // and trailers through each in turn (the headers go before the first body frame,
    // as Envoy's filter manager sends them when no plugin holds them).
    std::vector<size_t> order;
    for (size_t j = ctxs.size(); j-- > 0;) {
      if (!(failed && j + 1 == ctxs.size())) {
        order.push_back(j);
      }
    }
    std::vector<bool> held(ctxs.size(), false);
    bool eos = rchunks.empty() && s.resp_trailers.empty();
    std::vector<bool> merge(ctxs.size(), false);
    for (auto j : order) {
      auto *c = ctxs[j];
      s.resp_eos = eos;
      c->hold_resp_headers = true;
      auto st = c->onResponseHeaders(static_cast<uint32_t>(s.resp_headers.size()), eos);
      held[j] = st != FilterHeadersStatus::Continue && !c->continue_response;
      if (held[j] && st != FilterHeadersStatus::StopIteration) {
        // StopAllIterationAndWatermark: the plugin gets no body callback until it
        // resumes, e.g. from a callout's answer (answered now, with the headers still
        // writable). The body arrived meanwhile: it comes to the plugin as one chunk
        // (the filter manager's buffered_response_data_, as testenv merges it).
        deliverCallouts();
        if (c->continue_response) {
          held[j] = false;
          merge[j] = true;
        }
      }
      c->hold_resp_headers = false;
      finishReply(c);
      c->continue_response = false;
    }
    for (auto j : order) {
      auto *c = ctxs[j];
      if (merge[j] && rchunks.size() > 1) {
        std::string all;
        for (const auto &ch : rchunks) {
          all += ch;
        }
        rchunks = {all};
      }
      bool h = held[j];
      auto end = passBody(c, s, false, rchunks, &h, [&] {
        finishReply(c);
        return false;
      });
      held[j] = h;
      if (end != BodyEnd::TooLarge) {
        continue;
      }
      // Envoy's ActiveStreamEncoderFilter::responseDataTooLarge → sendLocalReply: while
      // the response headers have not reached the client (a plugin still holds them),
      // a 500 "Internal Server Error" goes to the client directly, past the filters
      // (sendDirectLocalReply); once they have, the stream is reset.
      if (std::find(held.begin(), held.end(), true) != held.end()) {
        LocalReply r;
        r.code = 500;
        r.body = "Internal Server Error";
        r.details = "response_payload_too_large";
        out["local_reply"] = true;
        out["details"] = r.details;
        out.erase("grpc_status");
        encodeReply(r, isGrpc(s.req_headers), s.resp_headers, s.resp_body);
        s.resp_trailers.clear();
        rchunks = {s.resp_body};
      } else {
        reset = true;
      }
      break;
    }
  }
  s.resp_body.clear();
  for (const auto &c : rchunks) {
    s.resp_body += c;
  }
  std::string status;
  for (const auto &p : s.resp_headers) {
    if (p.first == ":status") {
      status = p.second;
    }
  }
  out["status"] = status.empty() ? 0 : std::stoi(status);
  out["headers"] = headersJSON(s.resp_headers);
  out["body"] = s.resp_body;
  if (!s.resp_trailers.empty()) {
    out["trailers"] = headersJSON(s.resp_trailers);
  }
  if (reset) {
    // The client gets no response (testenv's Response of a reset stream).
    out["status"] = 0;
    out["headers"] = json::array();
    out["body"] = "";
    out.erase("trailers");
  }
  out["reset"] = reset;
  for (auto *c : ctxs) {
    out["reset"] = out["reset"].get<bool>() || c->closed;
  }
  // Envoy: onDestroy (proxy_on_done), the access log (proxy_on_log), then the
  // context's destructor (proxy_on_delete).
  for (auto *c : ctxs) {
    c->hold_req_headers = c->hold_resp_headers = true;
    c->destroy();
    c->onLog();
    c->onDelete();
    c->stream = nullptr;
    delete c;
  }
  if (clock_step > 0) {
    advance(clock_step);
  }
  return out;
}

void advance(uint64_t ms) {
  uint64_t target = env.now_ms + ms;
  while (true) {
    Timer *next = nullptr;
    for (auto &t : env.timers) {
      if (t.next_ms <= target && (next == nullptr || t.next_ms < next->next_ms)) {
        next = &t;
      }
    }
    if (next == nullptr) {
      break;
    }
    env.now_ms = next->next_ms;
    next->next_ms += next->period_ms;
    auto *w = next->wasm;
    auto id = next->root_context_id;
    // Envoy's Wasm::tickHandler, on the VM's worker: onTick on the root context that
    // set the period.
    runOn(next->worker, [&] {
      if (auto *ctx = w->getContext(id); ctx != nullptr) {
        ctx->onTick(0);
      }
      deliverCallouts();
    });
  }
  env.now_ms = target;
}

} // namespace

int main(int argc, char **argv) {
  // WAMR prints trap call stacks to stdout: keep stdout for the result alone.
  int result_fd = dup(1);
  dup2(2, 1);
  json sc;
  try {
    if (argc > 1) {
      std::ifstream f(argv[1]);
      sc = json::parse(f);
    } else {
      sc = json::parse(std::cin);
    }
  } catch (const std::exception &e) {
    std::cerr << "meshplug-cpphost: bad scenario: " << e.what() << "\n";
    return 2;
  }
  env.log_level = sc.value("log_level", 2);
  if (sc.contains("start_unix_ns")) {
    env.start_unix_ns = sc["start_unix_ns"].get<uint64_t>();
  }
  env.callouts = sc.value("callouts", json::object());
  env.grpc_callouts = sc.value("grpc_callouts", json::object());
  for (const auto &step : sc.value("steps", json::array())) {
    const json g = step.value("grpc_callouts", json::object());
    for (auto &[k, v] : g.items()) {
      if (!env.grpc_callouts.contains(k)) {
        env.grpc_callouts[k] = json{{"code", 14}, {"message", "no answer in this step"}};
      }
      (void)v;
    }
  }
  env.node_id = sc.value("node_id", "");
  env.allow_on_headers_stop_iteration = sc.value("allow_on_headers_stop_iteration", false);
  for (auto &[k, v] : env.callouts.items()) {
    (void)v;
    env.known_clusters.push_back(k);
  }
  for (const auto &c : sc.value("clusters", json::array())) {
    env.known_clusters.push_back(c.get<std::string>());
  }
  for (const auto &step : sc.value("steps", json::array())) {
    const json step_callouts = step.value("callouts", json::object()); // outlives the loop
    for (auto &[k, v] : step_callouts.items()) {
      (void)v;
      env.known_clusters.push_back(k);
    }
  }

  int nworkers = std::max(1, sc.value("workers", 1));
  for (int w = 0; w < nworkers; w++) {
    auto wk = std::make_unique<Worker>();
    wk->id = w;
    auto *raw = wk.get();
    wk->thread = std::thread([raw] { raw->loop(); });
    workers.push_back(std::move(wk));
  }

  json out = {{"host", MESHPLUG_CPPHOST_COMMIT}, {"engine", "wamr"}};
  std::vector<PluginSlot> slots;
  std::map<std::string, std::string> code_cache;
  json loads = json::array();
  for (const auto &p : sc.at("plugins")) {
    PluginSlot slot;
    std::string wasm_path = p.at("wasm").get<std::string>();
    if (!code_cache.count(wasm_path)) {
      code_cache[wasm_path] = readFile(wasm_path);
    }
    const std::string &code = code_cache[wasm_path];
    std::string vm_id = p.value("vm_id", "");
    std::string vm_config = p.value("vm_config", "");
    std::string root_id = p.value("root_id", "");
    bool fail_open = p.value("fail_open", false);
    slot.fail_reload = p.value("fail_reload", false);
    slot.reload_backoff_ms = p.value("reload_backoff_ms", 1000ULL);
    slot.last_load.assign(static_cast<size_t>(nworkers), env.now_ms);
    // Envoy's VM key: vm_id, vm configuration and the code's hash.
    std::string vm_key = vm_id + "||" + vm_config + "||" + std::to_string(std::hash<std::string>{}(code));
    slot.plugin = std::make_shared<PluginBase>(p.value("name", ""), root_id, vm_id, "wamr",
                                               p.value("config", ""), fail_open,
                                               p.value("name", "") + "|" + root_id);
    size_t errs = env.errors.size();
    env.phase = "base";
    slot.vm_key = vm_key;
    slot.code = code;
    // Plugin.Env: the environment of the VM this plugin creates (a VM shared by vm key
    // keeps the environment of the plugin that created it, as Envoy's does).
    std::unordered_map<std::string, std::string> envs;
    const json env_vars = p.value("env", json::object()); // outlives the loop
    for (auto &[k, v] : env_vars.items()) {
      envs[k] = v.get<std::string>();
    }
    slot.factory = [vm_id, vm_config, envs](std::string_view key) -> std::shared_ptr<WasmHandleBase> {
      auto vm = createWamrVm();
      vm->integration() = std::make_unique<DriverIntegration>();
      return std::make_shared<WasmHandleBase>(
          std::make_shared<DriverWasm>(std::move(vm), vm_id, vm_config, key, envs));
    };
    slot.base = createWasm(vm_key, code, slot.plugin, slot.factory, cloneWasm, false);
    env.phase.clear();
    json l = {{"name", p.value("name", "")}, {"loaded", slot.base != nullptr}};
    slot.locals.resize(static_cast<size_t>(nworkers));
    if (slot.base) {
      // Envoy's PluginConfig: each worker gets its thread-local VM (a clone of the base
      // VM) and plugin (root context started and configured there).
      bool started = true;
      for (int w = 0; w < nworkers; w++) {
        runOn(w, [&] { slot.locals[static_cast<size_t>(w)] = threadLocalPlugin(slot.base, slot.plugin); });
        started = started && slot.locals[static_cast<size_t>(w)] != nullptr;
      }
      l["started"] = started;
    }
    std::string why;
    for (size_t i = errs; i < env.errors.size(); i++) {
      why += (why.empty() ? "" : "\n") + env.errors[i];
    }
    l["errors"] = why;
    loads.push_back(l);
    slots.push_back(std::move(slot));
  }
  out["loads"] = loads;
  settle();

  json results = json::array();
  json reconfigures = json::array();
  for (const auto &step : sc.value("steps", json::array())) {
    env.step++;
    if (step.contains("reconfigure")) {
      // An xDS update of the plugin's configuration: Envoy's createWasm for the new
      // plugin (same VM key: the base VM is reused; the canary configures it in a
      // clone), then each worker's thread-local plugin; dropping the old plugin handle
      // shuts its root context down on that worker (PluginHandleBase's destructor →
      // WasmBase::startShutdown: proxy_on_done, proxy_on_delete). A refused
      // configuration leaves the old plugin in place.
      const auto &rc = step["reconfigure"];
      auto &slot = slots.at(rc.value("plugin", 0U));
      const auto &old = *slot.plugin;
      auto np = std::make_shared<PluginBase>(old.name_, old.root_id_, old.vm_id_, "wamr",
                                             rc.value("config", ""), old.fail_open_,
                                             old.name_ + "|" + old.root_id_);
      env.phase = "base";
      auto base = slot.base ? createWasm(slot.vm_key, slot.code, np, slot.factory, cloneWasm, false)
                            : nullptr;
      env.phase.clear();
      bool ok = base != nullptr;
      if (ok) {
        std::vector<std::shared_ptr<PluginHandleBase>> fresh(slot.locals.size());
        for (int w = 0; w < nworkers && ok; w++) {
          runOn(w, [&] { fresh[static_cast<size_t>(w)] = threadLocalPlugin(base, np); });
          ok = fresh[static_cast<size_t>(w)] != nullptr;
        }
        if (ok) {
          for (int w = 0; w < nworkers; w++) {
            runOn(w, [&] { slot.locals[static_cast<size_t>(w)] = fresh[static_cast<size_t>(w)]; });
            slot.last_load[static_cast<size_t>(w)] = env.now_ms;
          }
          slot.plugin = np;
          slot.base = base;
        }
      }
      reconfigures.push_back(ok);
      settle();
      continue;
    }
    if (step.contains("advance_ms")) {
      advance(step["advance_ms"].get<uint64_t>());
      settle();
      continue;
    }
    if (step.contains("wait_metric")) {
      // The callouts in flight are answered now (the driver's network is instant).
      settle();
      continue;
    }
    if (!step.contains("request")) {
      continue;
    }
    // The step's own callout answers replace the scenario's for its duration.
    json saved = env.callouts, saved_grpc = env.grpc_callouts;
    const json step_callouts = step.value("callouts", json::object()); // outlives the loop
    for (auto &[k, v] : step_callouts.items()) {
      env.callouts[k] = v;
    }
    const json step_grpc = step.value("grpc_callouts", json::object());
    for (auto &[k, v] : step_grpc.items()) {
      env.grpc_callouts[k] = v;
    }
    uint64_t repeat = step.value("repeat", 1);
    json last;
    json statuses = json::object();
    int64_t first_failure = -1;
    int worker = std::clamp(step.value("worker", 0), 0, nworkers - 1);
    for (uint64_t n = 0; n < repeat; n++) {
      runOn(worker, [&] {
        last = runRequest(slots, step["request"], step.value("upstream", json::object()));
      });
      auto key = std::to_string(last["status"].get<int>());
      statuses[key] = statuses.value(key, 0) + 1;
      if (first_failure < 0 && last.value("details", "") == "wasm_fail_stream") {
        first_failure = static_cast<int64_t>(n);
      }
    }
    if (repeat > 1) {
      last["repeat"] = {{"count", repeat}, {"statuses", statuses}, {"first_failure", first_failure}};
    }
    results.push_back(last);
    settle();
    env.callouts = saved;
    env.grpc_callouts = saved_grpc;
  }
  out["results"] = results;
  out["reconfigures"] = reconfigures;
  out["sent"] = env.sent;
  out["logs"] = env.logs;
  json metrics = json::object();
  json histograms = json::object();
  for (const auto &[name, m] : env.metrics) {
    if (m.type == 2) {
      histograms[name] = m.value; // the number of samples recorded
    } else {
      metrics[name] = m.value;
    }
  }
  out["metrics"] = metrics;
  out["histograms"] = histograms;
  json shared = json::object();
  for (const auto &slot : slots) {
    std::vector<std::string> keys;
    getGlobalSharedData().keys(slot.plugin->vm_id_, &keys);
    for (const auto &k : keys) {
      std::pair<std::string, uint32_t> v;
      if (getGlobalSharedData().get(slot.plugin->vm_id_, k, &v) == WasmResult::Ok) {
        static const char *hexd = "0123456789abcdef";
        std::string hex;
        for (unsigned char c : v.first) {
          hex += hexd[c >> 4];
          hex += hexd[c & 15];
        }
        shared[slot.plugin->vm_id_][k] = hex; // values are bytes: hex in JSON
      }
    }
  }
  out["shared_data"] = shared;
  bool vm_failed = false;
  for (const auto &slot : slots) {
    for (const auto &local : slot.locals) {
      if (local && local->wasm()->isFailed()) {
        vm_failed = true;
      }
    }
  }
  out["vm_failed"] = vm_failed;
  std::string text = out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  for (size_t off = 0; off < text.size();) {
    auto n = write(result_fd, text.data() + off, text.size() - off);
    if (n <= 0) {
      return 1;
    }
    off += static_cast<size_t>(n);
  }
  // Leave without tearing VMs down (cpp-host's static caches outlive main).
  std::fflush(stdout);
  std::_Exit(0);
}
