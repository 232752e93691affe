// Every CUDA kernel against a CPU reference computed in double (or exactly, for copies), on
// fresh random inputs, with outputs poisoned before each launch so that an unwritten element
// fails. Tolerances:
//  * f32 row kernels (RMSNorm, add + RMSNorm, SwiGLU, RoPE): max |gpu - ref| <= 1e-5 * (1 + |ref|)
//    (f32 arithmetic; the only differences are summation order and expf/fma rounding).
//  * exact: embedding (bf16 -> f32 is exact), gather, f32 -> bf16, KV pack/unpack.
//  * KV stores: the f16/bf16 value of the reference (rounding of an f32 that differs in the
//    last bit may flip one ulp, so one ulp is allowed).
//  * attention (queries rounded to the KV type, K/V as stored, softmax and sums in f32 with
//    __expf): ||gpu - ref||_2 / ||ref||_2 <= 2e-3 and max abs error <= 5e-3 (outputs are O(1)).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "common/fp16.h"
#include "gpu/gpu_test_util.h"
#include "kernels/attention_kernels.h"
#include "kernels/elementwise_kernels.h"
#include "kernels/kv_block_copy.h"
#include "kernels/rope_kv_kernels.h"
#include "kernels/sampling_kernels.h"

namespace tandem::kernels {
namespace {

using ::tandem::testing::DeviceArray;

std::vector<float> Random(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

void ExpectCloseF32(const std::vector<float>& got, const std::vector<double>& ref, double tol,
                    const char* what) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << " element " << i << " is NaN (unwritten?)";
    ASSERT_LE(std::abs(got[i] - ref[i]), tol * (1 + std::abs(ref[i]))) << what << " element " << i;
  }
}

class KernelsTest : public ::testing::Test {
 protected:
  void SetUp() override { TANDEM_GPU_OR_SKIP(); }
  std::mt19937 rng_{12345};
};

TEST_F(KernelsTest, RmsNormAndFusedResidualAdd) {
  for (int64_t cols : {64, 576, 4096, 5000}) {
    const int64_t rows = 7;
    const float eps = 1e-5f;
    auto x = Random(rows * cols, rng_), d = Random(rows * cols, rng_), w = Random(cols, rng_, 0.5f, 1.5f);
    DeviceArray<float> dx(x), dd(d), dw(w), dout(rows * cols);
    dout.Poison();
    ASSERT_EQ(LaunchRmsNorm(dx.get(), cols, dw.get(), eps, dout.get(), cols, rows, cols, nullptr), 0);
    std::vector<double> ref(rows * cols), ref_res(rows * cols), ref_fused(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0, ss2 = 0;
      for (int64_t c = 0; c < cols; ++c) {
        ss += double{x[r * cols + c]} * x[r * cols + c];
        ref_res[r * cols + c] = static_cast<float>(x[r * cols + c] + d[r * cols + c]);
        ss2 += ref_res[r * cols + c] * ref_res[r * cols + c];
      }
      for (int64_t c = 0; c < cols; ++c) {
        ref[r * cols + c] = x[r * cols + c] / std::sqrt(ss / cols + eps) * w[c];
        ref_fused[r * cols + c] = ref_res[r * cols + c] / std::sqrt(ss2 / cols + eps) * w[c];
      }
    }
    ExpectCloseF32(dout.Get(), ref, 1e-5, "rmsnorm");
    dout.Poison();
    ASSERT_EQ(LaunchAddRmsNorm(dx.get(), cols, dd.get(), cols, dw.get(), eps, dout.get(), cols, rows, cols,
                               nullptr), 0);
    ExpectCloseF32(dout.Get(), ref_fused, 1e-5, "add+rmsnorm out");
    ExpectCloseF32(dx.Get(), ref_res, 1e-6, "add+rmsnorm residual");
  }
}

TEST_F(KernelsTest, SwiGlu) {
  const int64_t rows = 5, cols = 1536;
  auto g = Random(rows * cols, rng_, -8, 8), u = Random(rows * cols, rng_);
  DeviceArray<float> dg(g), du(u), dout(rows * cols);
  dout.Poison();
  ASSERT_EQ(LaunchSwiGlu(dg.get(), cols, du.get(), cols, dout.get(), cols, rows, cols, nullptr), 0);
  std::vector<double> ref(rows * cols);
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = g[i] / (1 + std::exp(-double{g[i]})) * u[i];
  ExpectCloseF32(dout.Get(), ref, 1e-5, "swiglu");
}

TEST_F(KernelsTest, EmbedGatherAndConvertAreExact) {
  const int64_t vocab = 300, cols = 96, rows = 9;
  auto table_f = Random(vocab * cols, rng_);
  std::vector<uint16_t> table(table_f.size());
  for (size_t i = 0; i < table.size(); ++i) table[i] = Fp32ToBf16(table_f[i]);
  std::vector<int32_t> tokens = {0, 299, 5, 5, 17, 200, 1, -1, 300};  // last two: out of range
  DeviceArray<uint16_t> dt(table);
  DeviceArray<int32_t> dtok(tokens);
  DeviceArray<float> dout(rows * cols);
  dout.Poison();
  ASSERT_EQ(LaunchEmbed(reinterpret_cast<const __nv_bfloat16*>(dt.get()), vocab, dtok.get(), dout.get(), cols,
                        rows, cols, nullptr), 0);
  auto out = dout.Get();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float want = tokens[r] >= 0 && tokens[r] < vocab ? Bf16ToFp32(table[tokens[r] * cols + c]) : 0.0f;
      ASSERT_EQ(out[r * cols + c], want) << r << " " << c;
    }
  }
  std::vector<int32_t> idx = {8, 0, 3};
  DeviceArray<int32_t> didx(idx);
  DeviceArray<float> dsel(3 * cols);
  dsel.Poison();
  ASSERT_EQ(LaunchGatherRows(dout.get(), cols, didx.get(), dsel.get(), cols, 3, cols, nullptr), 0);
  auto sel = dsel.Get();
  for (int j = 0; j < 3; ++j) {
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(sel[j * cols + c], out[idx[j] * cols + c]);
  }
  auto x = Random(rows * cols, rng_, -100, 100);
  DeviceArray<float> dx(x);
  DeviceArray<uint16_t> db(rows * cols);
  db.Poison();
  ASSERT_EQ(LaunchF32ToBf16(dx.get(), cols, reinterpret_cast<__nv_bfloat16*>(db.get()), rows, cols, nullptr), 0);
  auto b = db.Get();
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(b[i], Fp32ToBf16(x[i])) << i;
}

// Host model of the device KV cache (kernel_types.h layout).
struct HostCache {
  KvGeometry g;
  int64_t num_blocks;
  std::vector<uint16_t> data;
  int64_t Key(int64_t block, int layer, int head, int off) const {
    return (block * g.num_layers + layer) * g.block_layer_elems() + head * g.head_elems() +
           static_cast<int64_t>(off) * g.head_dim;
  }
  int64_t Value(int64_t block, int layer, int head, int off) const {
    return Key(block, layer, head, off) + g.num_kv_heads * g.head_elems();
  }
  float Get(int64_t i) const { return g.elem == KvElem::kBF16 ? Bf16ToFp32(data[i]) : Fp16ToFp32(data[i]); }
  uint16_t Round(float x) const { return g.elem == KvElem::kBF16 ? Fp32ToBf16(x) : Fp32ToFp16(x); }
};

TEST_F(KernelsTest, RopeAndStoreKv) {
  for (KvElem elem : {KvElem::kF16, KvElem::kBF16}) {
    KvGeometry g{.num_layers = 3, .num_kv_heads = 2, .head_dim = 64, .block_size = 16, .elem = elem};
    const int num_heads = 8, half = 32, max_pos = 512, layer = 1;
    const int64_t rows = 6, num_blocks = 10;
    std::vector<float> cs(max_pos * half), sn(max_pos * half);
    for (int p = 0; p < max_pos; ++p) {
      for (int i = 0; i < half; ++i) {
        const double a = p * std::pow(10000.0, -2.0 * i / 64);
        cs[p * half + i] = static_cast<float>(std::cos(a));
        sn[p * half + i] = static_cast<float>(std::sin(a));
      }
    }
    auto q = Random(rows * num_heads * 64, rng_), k = Random(rows * 2 * 64, rng_), v = Random(rows * 2 * 64, rng_);
    std::vector<int32_t> pos = {0, 1, 77, 300, 511, 5}, slots = {0, 17, 159, 40, 3, -1};
    HostCache hc{g, num_blocks, std::vector<uint16_t>(num_blocks * g.block_bytes() / 2, 0x7bff)};
    DeviceArray<float> dq(q), dk(k), dv(v), dcs(cs), dsn(sn);
    DeviceArray<int32_t> dpos(pos), dslots(slots);
    DeviceArray<uint16_t> dcache(hc.data);
    RopeKvArgs a{dq.get(), num_heads * 64, dk.get(), 2 * 64, dv.get(), 2 * 64, rows, num_heads, dpos.get(),
                 dslots.get(), dcs.get(), dsn.get(), 64, dcache.get(), g, layer};
    ASSERT_EQ(LaunchRopeAndStoreKv(a, nullptr), 0);
    auto rotate = [&](const std::vector<float>& x, int heads) {
      std::vector<double> out(x.begin(), x.end());
      for (int64_t r = 0; r < rows; ++r) {
        for (int h = 0; h < heads; ++h) {
          for (int i = 0; i < half; ++i) {
            const int64_t at = (r * heads + h) * 64 + 2 * i;
            const double c = cs[pos[r] * half + i], s = sn[pos[r] * half + i];
            out[at] = x[at] * c - x[at + 1] * s;
            out[at + 1] = x[at] * s + x[at + 1] * c;
          }
        }
      }
      return out;
    };
    const auto qr = rotate(q, num_heads), kr = rotate(k, 2);
    ExpectCloseF32(dq.Get(), qr, 1e-5, "rope q");
    ExpectCloseF32(dk.Get(), kr, 1e-5, "rope k");
    auto cache = dcache.Get();
    std::vector<bool> written(cache.size(), false);
    for (int64_t r = 0; r < rows; ++r) {
      if (slots[r] < 0) continue;
      for (int h = 0; h < 2; ++h) {
        for (int d = 0; d < 64; ++d) {
          const int64_t ki = hc.Key(slots[r] / 16, layer, h, slots[r] % 16) + d;
          const int64_t vi = hc.Value(slots[r] / 16, layer, h, slots[r] % 16) + d;
          const uint16_t kw = hc.Round(static_cast<float>(kr[(r * 2 + h) * 64 + d]));
          ASSERT_LE(std::abs(int{cache[ki]} - int{kw}), 1) << "key row " << r;
          ASSERT_EQ(cache[vi], hc.Round(v[(r * 2 + h) * 64 + d])) << "value row " << r;
          written[ki] = written[vi] = true;
        }
      }
    }
    for (size_t i = 0; i < cache.size(); ++i) {
      if (!written[i]) {
        ASSERT_EQ(cache[i], 0x7bff) << "element " << i << " written but should not be";
      }
    }
  }
}

// Reference attention in double over a host cache: row r of sequence s sees keys [0, pos].
std::vector<double> ReferenceAttention(const HostCache& hc, int layer, const std::vector<float>& q, int num_heads,
                                       float scale, const std::vector<int32_t>& pos,
                                       const std::vector<int32_t>& row_seq,
                                       const std::vector<std::vector<int32_t>>& tables) {
  const int hd = hc.g.head_dim, G = num_heads / hc.g.num_kv_heads, bs = hc.g.block_size;
  std::vector<double> out(q.size());
  for (size_t r = 0; r < pos.size(); ++r) {
    const auto& bt = tables[row_seq[r]];
    for (int h = 0; h < num_heads; ++h) {
      const int kvh = h / G;
      std::vector<double> s(pos[r] + 1);
      double mx = -1e300;
      for (int key = 0; key <= pos[r]; ++key) {
        double dot = 0;
        for (int d = 0; d < hd; ++d) {
          const float qv = hc.g.elem == KvElem::kBF16 ? Bf16ToFp32(Fp32ToBf16(q[(r * num_heads + h) * hd + d]))
                                                      : Fp16ToFp32(Fp32ToFp16(q[(r * num_heads + h) * hd + d]));
          dot += qv * hc.Get(hc.Key(bt[key / bs], layer, kvh, key % bs) + d);
        }
        s[key] = dot * scale;
        mx = std::max(mx, s[key]);
      }
      double l = 0;
      for (auto& x : s) l += (x = std::exp(x - mx));
      for (int d = 0; d < hd; ++d) {
        double o = 0;
        for (int key = 0; key <= pos[r]; ++key) o += s[key] * hc.Get(hc.Value(bt[key / bs], layer, kvh, key % bs) + d);
        out[(r * num_heads + h) * hd + d] = o / l;
      }
    }
  }
  return out;
}

void ExpectAttentionClose(const std::vector<float>& got, const std::vector<double>& ref, const std::string& what) {
  double num = 0, den = 0, max_abs = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_FALSE(std::isnan(got[i])) << what << " element " << i << " is NaN (unwritten?)";
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
    max_abs = std::max(max_abs, std::abs(got[i] - ref[i]));
  }
  EXPECT_LE(std::sqrt(num / den), 2e-3) << what;
  EXPECT_LE(max_abs, 5e-3) << what;
}

struct AttentionCase {
  KvElem elem;
  int head_dim, num_heads, num_kv_heads, block_size;
};

class AttentionTest : public KernelsTest, public ::testing::WithParamInterface<AttentionCase> {};

// A mixed batch: sequence 0 decodes at a long context (several splits), sequence 1 decodes at
// position 0, sequence 2 is a 37-row prefill chunk after 40 cached tokens, sequence 3 a
// 5-row first chunk, sequence 4 decodes mid-length. Decode and prefill kernels each take their
// rows; the output of both is compared with the reference.
TEST_P(AttentionTest, DecodeAndChunkedPrefillMatchReference) {
  const AttentionCase c = GetParam();
  KvGeometry g{.num_layers = 2, .num_kv_heads = c.num_kv_heads, .head_dim = c.head_dim,
               .block_size = c.block_size, .elem = c.elem};
  const int layer = 1, hd = c.head_dim, H = c.num_heads;
  const std::vector<int> ctx = {1300, 1, 77, 5, 300};
  const std::vector<int> qlen = {1, 1, 37, 5, 1};
  int64_t num_blocks = 0;
  for (int n : ctx) num_blocks += (n + c.block_size - 1) / c.block_size;
  num_blocks += 3;
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng_);
  std::vector<std::vector<int32_t>> tables;
  std::vector<int32_t> flat, offsets, pos, row_seq, decode_rows, tiles;
  size_t next = 0;
  for (size_t s = 0; s < ctx.size(); ++s) {
    offsets.push_back(static_cast<int32_t>(flat.size()));
    tables.emplace_back(ids.begin() + next, ids.begin() + next + (ctx[s] + c.block_size - 1) / c.block_size);
    next += tables.back().size();
    flat.insert(flat.end(), tables.back().begin(), tables.back().end());
    const int first = static_cast<int>(pos.size());
    for (int i = 0; i < qlen[s]; ++i) {
      pos.push_back(ctx[s] - qlen[s] + i);
      row_seq.push_back(static_cast<int32_t>(s));
    }
    if (qlen[s] == 1) {
      decode_rows.push_back(first);
    } else {
      const int R = PrefillRowsPerTile(H / c.num_kv_heads);
      for (int r = 0; r < qlen[s]; r += R) {
        tiles.push_back(first + r);
        tiles.push_back(std::min(R, qlen[s] - r));
      }
    }
  }
  const int64_t rows = static_cast<int64_t>(pos.size());
  HostCache hc{g, num_blocks, std::vector<uint16_t>(num_blocks * g.block_bytes() / 2)};
  for (auto& x : hc.data) x = hc.Round(std::uniform_real_distribution<float>(-1, 1)(rng_));
  auto q = Random(rows * H * hd, rng_, -2, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  DeviceArray<uint16_t> dcache(hc.data);
  DeviceArray<float> dq(q), dout(rows * H * hd);
  DeviceArray<int32_t> dpos(pos), dseq(row_seq), doff(offsets), dflat(flat), ddec(decode_rows), dtiles(tiles);
  AttentionArgs a{dq.get(), H * hd, dout.get(), H * hd, H, scale, dcache.get(), g, layer,
                  dpos.get(), dseq.get(), doff.get(), dflat.get()};
  int max_keys = 0;
  for (int32_t r : decode_rows) max_keys = std::max(max_keys, pos[r] + 1);
  const int64_t ws = DecodeAttentionWorkspaceFloats(decode_rows.size(), H, hd, max_keys);
  DeviceArray<float> dws(std::max<int64_t>(ws, 1));
  dout.Poison();
  ASSERT_EQ(LaunchDecodeAttention(a, ddec.get(), decode_rows.size(), max_keys, dws.get(), ws, nullptr), 0);
  ASSERT_EQ(LaunchPrefillAttention(a, dtiles.get(), tiles.size() / 2, nullptr), 0);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto ref = ReferenceAttention(hc, layer, q, H, scale, pos, row_seq, tables);
  ExpectAttentionClose(dout.Get(), ref, "decode + prefill");

  // Every row through the decode kernel (one row at a time is what decode does; any row works),
  // and with a grid for far more keys than any row has (extra splits must be ignored).
  std::vector<int32_t> all(rows);
  std::iota(all.begin(), all.end(), 0);
  DeviceArray<int32_t> dall(all);
  const int64_t ws2 = DecodeAttentionWorkspaceFloats(rows, H, hd, 4096);
  DeviceArray<float> dws2(ws2);
  dout.Poison();
  ASSERT_EQ(LaunchDecodeAttention(a, dall.get(), rows, 4096, dws2.get(), ws2, nullptr), 0);
  ExpectAttentionClose(dout.Get(), ref, "decode kernel on every row");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(AttentionCase{KvElem::kF16, 64, 9, 3, 16},     // SmolLM2-135M
                      AttentionCase{KvElem::kBF16, 128, 32, 8, 16},  // Llama-3-8B
                      AttentionCase{KvElem::kF16, 128, 8, 8, 32},    // MHA, larger blocks
                      AttentionCase{KvElem::kBF16, 16, 4, 2, 4},     // the tiny test model
                      AttentionCase{KvElem::kF16, 256, 16, 1, 16}),  // MQA, group 16, widest head
    [](const auto& info) { return "case" + std::to_string(info.index); });

TEST_F(KernelsTest, KvGatherScatterRoundTrip) {
  const int64_t block_bytes = 4096, num_blocks = 12;
  std::vector<uint8_t> cache(num_blocks * block_bytes);
  for (auto& b : cache) b = static_cast<uint8_t>(rng_());
  std::vector<int32_t> list = {7, 0, 11, 3};
  DeviceArray<uint8_t> dcache(cache), dpacked(list.size() * block_bytes);
  DeviceArray<int32_t> dlist(list);
  ASSERT_EQ(LaunchKvGather(dcache.get(), num_blocks, block_bytes, dlist.get(), list.size(), dpacked.get(), nullptr), 0);
  auto packed = dpacked.Get();
  for (size_t i = 0; i < list.size(); ++i) {
    ASSERT_TRUE(std::equal(packed.begin() + i * block_bytes, packed.begin() + (i + 1) * block_bytes,
                           cache.begin() + list[i] * block_bytes)) << i;
  }
  // Scatter into other blocks of a cleared cache; ids out of range are skipped.
  std::vector<int32_t> dst = {1, 2, -1, 99};
  DeviceArray<int32_t> ddst(dst);
  DeviceArray<uint8_t> dcache2(cache.size());
  ASSERT_EQ(cudaMemset(dcache2.get(), 0, cache.size()), cudaSuccess);
  ASSERT_EQ(LaunchKvScatter(dpacked.get(), ddst.get(), dst.size(), block_bytes, dcache2.get(), num_blocks, nullptr), 0);
  auto cache2 = dcache2.Get();
  for (int64_t b = 0; b < num_blocks; ++b) {
    for (int64_t i = 0; i < block_bytes; ++i) {
      const uint8_t want = b == 1 ? packed[i] : b == 2 ? packed[block_bytes + i] : 0;
      ASSERT_EQ(cache2[b * block_bytes + i], want) << b;
    }
  }
  EXPECT_NE(LaunchKvGather(dcache.get(), num_blocks, 100, dlist.get(), 1, dpacked.get(), nullptr), 0);  // not x16
}

TEST_F(KernelsTest, SamplingGreedyTopKTopPAndDeterminism) {
  const int64_t vocab = 1000;
  const int rows = 6;
  std::vector<float> logits = Random(rows * vocab, rng_, -5, 5);
  logits[0 * vocab + 10] = 9;  // row 0: greedy -> 10
  logits[1 * vocab + 20] = 9;  // row 1: ties at 20 and 30 -> 20 (lowest id)
  logits[1 * vocab + 30] = 9;
  logits[2 * vocab + 40] = 9;  // row 2: top_k = 1 -> 40 despite temperature
  logits[3 * vocab + 50] = 30;  // row 3: top_p = 0.5 with one dominant token -> 50
  std::vector<float> temp = {0, 0, 1, 1, 1, 0.7f};
  std::vector<int32_t> top_k = {0, 0, 1, 0, 5, 0};
  std::vector<float> top_p = {1, 1, 1, 0.5f, 1, 0.9f};
  std::vector<uint64_t> seeds = {1, 2, 3, 4, 5, 6}, counters = {0, 0, 0, 0, 7, 9};
  DeviceArray<float> dl(logits), dt(temp), dp(top_p);
  DeviceArray<int32_t> dk(top_k), dout(rows);
  DeviceArray<uint64_t> ds(seeds), dc(counters);
  SampleArgs a{dl.get(), vocab, vocab, rows, dt.get(), dk.get(), dp.get(), ds.get(), dc.get(), dout.get()};
  dout.Poison();
  ASSERT_EQ(LaunchSampleTokens(a, nullptr), 0);
  const auto out = dout.Get();
  EXPECT_EQ(out[0], 10);
  EXPECT_EQ(out[1], 20);
  EXPECT_EQ(out[2], 40);
  EXPECT_EQ(out[3], 50);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return logits[4 * vocab + x] > logits[4 * vocab + y]; });
  EXPECT_NE(std::find(order.begin(), order.begin() + 5, out[4]), order.begin() + 5) << "top-k 5 kept " << out[4];
  ASSERT_EQ(LaunchSampleTokens(a, nullptr), 0);
  EXPECT_EQ(dout.Get(), out) << "same seeds and counters must give the same tokens";
}

TEST_F(KernelsTest, SamplingFollowsTheDistribution) {
  // 8 tokens with known probabilities at temperature 1; 20000 rows, each its own draw.
  const int64_t vocab = 8, rows = 20000;
  const std::vector<float> base = {0, 1, 2, -1, 0.5f, 3, -2, 1.5f};
  std::vector<float> logits, temp(rows, 1.0f), top_p(rows, 1.0f);
  std::vector<int32_t> top_k(rows, 0);
  std::vector<uint64_t> seeds(rows, 42), counters(rows);
  for (int64_t r = 0; r < rows; ++r) {
    logits.insert(logits.end(), base.begin(), base.end());
    counters[r] = r;
  }
  DeviceArray<float> dl(logits), dt(temp), dp(top_p);
  DeviceArray<int32_t> dk(top_k), dout(rows);
  DeviceArray<uint64_t> ds(seeds), dc(counters);
  SampleArgs a{dl.get(), vocab, vocab, rows, dt.get(), dk.get(), dp.get(), ds.get(), dc.get(), dout.get()};
  ASSERT_EQ(LaunchSampleTokens(a, nullptr), 0);
  const auto out = dout.Get();
  std::vector<double> want(vocab), seen(vocab);
  double z = 0;
  for (int i = 0; i < vocab; ++i) z += (want[i] = std::exp(double{base[i]}));
  for (int32_t t : out) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, vocab);
    seen[t] += 1.0 / rows;
  }
  for (int i = 0; i < vocab; ++i) EXPECT_NEAR(seen[i], want[i] / z, 0.015) << "token " << i;
}

}  // namespace
}  // namespace tandem::kernels
