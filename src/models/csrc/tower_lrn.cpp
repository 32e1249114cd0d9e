// Tower LRN (paper section 3.3) on the CPU: forward and backward each in one pass over memory.
//
// The formulas are those of src/models/lrn.py (cuda-convnet's convention, alpha / n per squared neighbour):
//   s_i = k + alpha/n * sum_{j in W(i)} a_j^2,   b_i = a_i s_i^-beta,
//   dL/da_m = g_m s_m^-beta - 2 (alpha/n) beta a_m sum_{i : m in W(i)} g_i b_i / s_i,
// with W(i) = i - before .. i + after clipped to the tower's own maps. The eager version makes ~20 passes
// over a 37 MB activation (conv1 at batch 32); here a block of pixels of one tower is read once into
// scratch (which stays in cache), every window is summed there, and the result is written once. The
// backward recomputes s from the input instead of keeping it, so the forward saves nothing new.
//
// Any dtype goes in (fp32, bf16, fp16); the arithmetic is fp32 and the result is rounded once to the input
// dtype, as the eager version does. Two memory layouts: (N, C, spatial...) contiguous, where a block is a
// run of pixels in each map, and channels_last (N, H, W, C), where a block is a run of pixels whose maps
// are contiguous. Registered as torch.ops.alexnet_towers_lrn.{forward,backward}.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kPixelsPerBlock = 64;

// Where one tower's maps of one block of pixels live: element (map i, pixel p) of the block is at
// base[i * map_stride + p * pixel_stride].
struct Layout {
  int64_t outer;         // images
  int64_t channels;      // all towers
  int64_t pixels;        // per image per map
  int64_t image_stride;  // elements between images
  int64_t map_stride;    // elements between maps
  int64_t pixel_stride;  // elements between pixels
};

Layout layout_of(const at::Tensor& x, bool channels_last) {
  const int64_t n = x.size(0), c = x.size(1);
  const int64_t pixels = n == 0 || c == 0 ? 0 : x.numel() / (n * c);
  if (channels_last) return {n, c, pixels, pixels * c, 1, c};
  return {n, c, pixels, c * pixels, pixels, 1};
}

struct Lrn {
  int64_t maps;    // per tower
  int64_t before;  // window W(i) = i - before .. i + after
  int64_t after;
  float alpha_n;   // alpha / n
  float beta;
  float k;
};

// s^-beta for a row of scales; the paper's beta = 3/4 as 1 / sqrt(s sqrt(s)), which vectorises.
inline void inverse_power(const float* __restrict__ s, float* __restrict__ out, int64_t len, float beta) {
  if (beta == 0.75f) {
    for (int64_t p = 0; p < len; ++p) out[p] = 1.0f / std::sqrt(s[p] * std::sqrt(s[p]));
  } else {
    for (int64_t p = 0; p < len; ++p) out[p] = std::pow(s[p], -beta);
  }
}

template <typename scalar_t>
void load_block(const scalar_t* base, const Layout& lay, int64_t maps, int64_t len, float* dst) {
  for (int64_t i = 0; i < maps; ++i) {
    const scalar_t* row = base + i * lay.map_stride;
    float* out = dst + i * kPixelsPerBlock;
    if (lay.pixel_stride == 1) {
      for (int64_t p = 0; p < len; ++p) out[p] = static_cast<float>(row[p]);
    } else {
      for (int64_t p = 0; p < len; ++p) out[p] = static_cast<float>(row[p * lay.pixel_stride]);
    }
  }
}

template <typename scalar_t>
void store_row(const float* src, const Layout& lay, int64_t len, scalar_t* row) {
  if (lay.pixel_stride == 1) {
    for (int64_t p = 0; p < len; ++p) row[p] = static_cast<scalar_t>(src[p]);
  } else {
    for (int64_t p = 0; p < len; ++p) row[p * lay.pixel_stride] = static_cast<scalar_t>(src[p]);
  }
}

// scale[i] = k + alpha/n * sum of squares over W(i), for every map of the block; squares must hold
// alpha/n * a^2 per map.
inline void window_scale(const float* __restrict__ squares, const Lrn& lrn, int64_t i, int64_t len,
                         float* __restrict__ scale) {
  const int64_t lo = std::max<int64_t>(0, i - lrn.before);
  const int64_t hi = std::min<int64_t>(lrn.maps - 1, i + lrn.after);
  const float k = lrn.k;
  for (int64_t p = 0; p < len; ++p) scale[p] = k;
  for (int64_t j = lo; j <= hi; ++j) {
    const float* __restrict__ sq = squares + j * kPixelsPerBlock;
    for (int64_t p = 0; p < len; ++p) scale[p] += sq[p];
  }
}

// Calls fn(first element of the block's tower, pixels in the block, scratch) for every (image, tower,
// block of pixels), in parallel; each thread gets its own scratch of `rows` map rows.
template <typename Fn>
void for_each_block(const Layout& lay, const Lrn& lrn, int64_t rows, Fn fn) {
  const int64_t towers = lay.channels / lrn.maps;
  const int64_t blocks = (lay.pixels + kPixelsPerBlock - 1) / kPixelsPerBlock;
  const int64_t tasks = lay.outer * towers * blocks;
  at::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(rows * lrn.maps * kPixelsPerBlock + 2 * kPixelsPerBlock);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = task % blocks;
      const int64_t tower = (task / blocks) % towers;
      const int64_t image = task / (blocks * towers);
      const int64_t first_pixel = block * kPixelsPerBlock;
      const int64_t len = std::min(kPixelsPerBlock, lay.pixels - first_pixel);
      const int64_t offset =
          image * lay.image_stride + tower * lrn.maps * lay.map_stride + first_pixel * lay.pixel_stride;
      fn(offset, len, scratch.data());
    }
  });
}

// alpha/n a^2 for every map row of the block.
inline void scaled_squares(const float* __restrict__ maps, float alpha_n, int64_t rows, int64_t len,
                           float* __restrict__ squares) {
  for (int64_t i = 0; i < rows; ++i) {
    const float* __restrict__ a = maps + i * kPixelsPerBlock;
    float* __restrict__ sq = squares + i * kPixelsPerBlock;
    for (int64_t p = 0; p < len; ++p) sq[p] = alpha_n * a[p] * a[p];
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* x, scalar_t* out, const Layout& lay, const Lrn& lrn) {
  const int64_t plane = lrn.maps * kPixelsPerBlock;
  for_each_block(lay, lrn, 2, [&](int64_t offset, int64_t len, float* scratch) {
    float* __restrict__ maps = scratch;             // a
    float* __restrict__ squares = scratch + plane;  // alpha/n a^2
    float* __restrict__ scale = scratch + 2 * plane;
    float* __restrict__ row = scale + kPixelsPerBlock;
    load_block(x + offset, lay, lrn.maps, len, maps);
    scaled_squares(maps, lrn.alpha_n, lrn.maps, len, squares);
    for (int64_t i = 0; i < lrn.maps; ++i) {
      const float* __restrict__ a = maps + i * kPixelsPerBlock;
      window_scale(squares, lrn, i, len, scale);
      inverse_power(scale, row, len, lrn.beta);
      for (int64_t p = 0; p < len; ++p) row[p] *= a[p];
      store_row(row, lay, len, out + offset + i * lay.map_stride);
    }
  });
}

template <typename scalar_t>
void backward_kernel(
    const scalar_t* grad, const scalar_t* x, scalar_t* grad_x, const Layout& lay, const Lrn& lrn) {
  const int64_t plane = lrn.maps * kPixelsPerBlock;
  const float coefficient = 2.0f * lrn.alpha_n * lrn.beta;
  for_each_block(lay, lrn, 4, [&](int64_t offset, int64_t len, float* scratch) {
    float* __restrict__ maps = scratch;                 // a
    float* __restrict__ grads = scratch + plane;        // g, then g s^-beta
    float* __restrict__ squares = scratch + 2 * plane;  // alpha/n a^2
    float* __restrict__ ratios = scratch + 3 * plane;   // g b / s
    float* __restrict__ scale = scratch + 4 * plane;
    float* __restrict__ row = scale + kPixelsPerBlock;
    load_block(x + offset, lay, lrn.maps, len, maps);
    load_block(grad + offset, lay, lrn.maps, len, grads);
    scaled_squares(maps, lrn.alpha_n, lrn.maps, len, squares);
    for (int64_t i = 0; i < lrn.maps; ++i) {
      const float* __restrict__ a = maps + i * kPixelsPerBlock;
      float* __restrict__ g = grads + i * kPixelsPerBlock;
      float* __restrict__ ratio = ratios + i * kPixelsPerBlock;
      window_scale(squares, lrn, i, len, scale);
      inverse_power(scale, row, len, lrn.beta);
      for (int64_t p = 0; p < len; ++p) {
        const float g_scaled = g[p] * row[p];  // g_i s_i^-beta
        ratio[p] = g_scaled * a[p] / scale[p];  // g_i b_i / s_i
        g[p] = g_scaled;
      }
    }
    // The maps i whose window holds m are m - after .. m + before: the mirrored window.
    for (int64_t m = 0; m < lrn.maps; ++m) {
      const int64_t lo = std::max<int64_t>(0, m - lrn.after);
      const int64_t hi = std::min<int64_t>(lrn.maps - 1, m + lrn.before);
      for (int64_t p = 0; p < len; ++p) scale[p] = 0.0f;
      for (int64_t i = lo; i <= hi; ++i) {
        const float* __restrict__ ratio = ratios + i * kPixelsPerBlock;
        for (int64_t p = 0; p < len; ++p) scale[p] += ratio[p];
      }
      const float* __restrict__ a = maps + m * kPixelsPerBlock;
      const float* __restrict__ g = grads + m * kPixelsPerBlock;
      for (int64_t p = 0; p < len; ++p) row[p] = g[p] - coefficient * a[p] * scale[p];
      store_row(row, lay, len, grad_x + offset + m * lay.map_stride);
    }
  });
}

// channels_last: every pixel's maps are contiguous, so the window sums run along the maps of one pixel
// (vectorised over maps), on zero-padded rows: padded[before + i] holds map i's term, and a window is the
// before + 1 + after consecutive entries from padded[i].
struct PixelRows {
  std::vector<float> maps, grads, padded_squares, padded_ratios, scale, power;
  PixelRows(const Lrn& lrn)
      : maps(lrn.maps), grads(lrn.maps), padded_squares(lrn.maps + lrn.before + lrn.after, 0.0f),
        padded_ratios(lrn.maps + lrn.before + lrn.after, 0.0f), scale(lrn.maps), power(lrn.maps) {}
};

template <typename scalar_t>
inline void load_row(const scalar_t* __restrict__ src, int64_t len, float* __restrict__ dst) {
  for (int64_t i = 0; i < len; ++i) dst[i] = static_cast<float>(src[i]);
}

// scale_i = k + sum of padded[i .. i + width), power_i = scale_i^-beta.
inline void padded_window_scale(const float* __restrict__ padded, int64_t maps, int64_t width, float k,
                                float beta, float* __restrict__ scale, float* __restrict__ power) {
  for (int64_t i = 0; i < maps; ++i) scale[i] = k;
  for (int64_t d = 0; d < width; ++d) {
    for (int64_t i = 0; i < maps; ++i) scale[i] += padded[i + d];
  }
  inverse_power(scale, power, maps, beta);
}

template <typename scalar_t>
void forward_channels_last(const scalar_t* x, scalar_t* out, int64_t rows, int64_t channels, const Lrn& lrn) {
  const int64_t towers = channels / lrn.maps, width = lrn.before + 1 + lrn.after, maps = lrn.maps;
  const float alpha_n = lrn.alpha_n;
  at::parallel_for(0, rows * towers, 64, [&](int64_t begin, int64_t end) {
    PixelRows row(lrn);
    float* __restrict__ a = row.maps.data();
    float* __restrict__ squares = row.padded_squares.data() + lrn.before;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t offset = task * maps;  // (pixel, tower) rows are consecutive runs of `maps` values
      load_row(x + offset, maps, a);
      for (int64_t i = 0; i < maps; ++i) squares[i] = alpha_n * a[i] * a[i];
      padded_window_scale(row.padded_squares.data(), maps, width, lrn.k, lrn.beta, row.scale.data(),
                          row.power.data());
      scalar_t* __restrict__ dst = out + offset;
      const float* __restrict__ power = row.power.data();
      for (int64_t i = 0; i < maps; ++i) dst[i] = static_cast<scalar_t>(a[i] * power[i]);
    }
  });
}

template <typename scalar_t>
void backward_channels_last(const scalar_t* grad, const scalar_t* x, scalar_t* grad_x, int64_t rows,
                            int64_t channels, const Lrn& lrn) {
  const int64_t towers = channels / lrn.maps, width = lrn.before + 1 + lrn.after, maps = lrn.maps;
  const float alpha_n = lrn.alpha_n, coefficient = 2.0f * lrn.alpha_n * lrn.beta;
  at::parallel_for(0, rows * towers, 64, [&](int64_t begin, int64_t end) {
    PixelRows row(lrn);
    float* __restrict__ a = row.maps.data();
    float* __restrict__ g = row.grads.data();
    float* __restrict__ squares = row.padded_squares.data() + lrn.before;
    // ratio_i sits at padded_ratios[after + i], so the mirrored window of m (i = m - after .. m + before)
    // is padded_ratios[m .. m + width).
    float* __restrict__ ratios = row.padded_ratios.data() + lrn.after;
    const float* __restrict__ scale = row.scale.data();
    const float* __restrict__ power = row.power.data();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t offset = task * maps;
      load_row(x + offset, maps, a);
      load_row(grad + offset, maps, g);
      for (int64_t i = 0; i < maps; ++i) squares[i] = alpha_n * a[i] * a[i];
      padded_window_scale(row.padded_squares.data(), maps, width, lrn.k, lrn.beta, row.scale.data(),
                          row.power.data());
      for (int64_t i = 0; i < maps; ++i) {
        const float g_scaled = g[i] * power[i];  // g_i s_i^-beta
        ratios[i] = g_scaled * a[i] / scale[i];  // g_i b_i / s_i
        g[i] = g_scaled;
      }
      const float* __restrict__ window = row.padded_ratios.data();
      float* __restrict__ sums = row.scale.data();  // the scale is not needed any more
      for (int64_t m = 0; m < maps; ++m) sums[m] = 0.0f;
      for (int64_t d = 0; d < width; ++d) {
        for (int64_t m = 0; m < maps; ++m) sums[m] += window[m + d];
      }
      scalar_t* __restrict__ dst = grad_x + offset;
      for (int64_t m = 0; m < maps; ++m) dst[m] = static_cast<scalar_t>(g[m] - coefficient * a[m] * sums[m]);
    }
  });
}

void check_input(const at::Tensor& x, int64_t towers, int64_t size) {
  TORCH_CHECK(x.device().is_cpu(), "tower LRN kernel: the input must be on the CPU, got ", x.device());
  TORCH_CHECK(x.dim() >= 3, "tower LRN kernel: the input needs (batch, channels, ...), got ", x.sizes());
  TORCH_CHECK(towers > 0 && x.size(1) % towers == 0, "tower LRN kernel: ", x.size(1),
              " channels do not split into ", towers, " towers");
  TORCH_CHECK(size > 0, "tower LRN kernel: size must be positive, got ", size);
  const auto dtype = x.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
              "tower LRN kernel: computes in fp32, so takes float32, bfloat16 or float16, got ", dtype);
}

Lrn lrn_of(const at::Tensor& x, int64_t towers, int64_t size, double alpha, double beta, double k) {
  return {x.size(1) / towers, size / 2, (size - 1) / 2, static_cast<float>(alpha / size),
          static_cast<float>(beta), static_cast<float>(k)};
}

// The input in one of the two layouts the kernels read (channels_last stays channels_last; anything else is
// made contiguous), where its elements are, and the LRN's constants.
struct Prepared {
  bool channels_last;
  at::MemoryFormat format;
  at::Tensor x;
  Layout lay;
  Lrn lrn;
};

Prepared prepare(const at::Tensor& input, int64_t towers, int64_t size, double alpha, double beta, double k) {
  check_input(input, towers, size);
  const bool channels_last =
      input.dim() == 4 && !input.is_contiguous() && input.is_contiguous(at::MemoryFormat::ChannelsLast);
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  at::Tensor x = input.contiguous(format);
  const Layout lay = layout_of(x, channels_last);
  return {channels_last, format, x, lay, lrn_of(x, towers, size, alpha, beta, k)};
}

at::Tensor lrn_forward(const at::Tensor& input, int64_t towers, int64_t size, double alpha, double beta,
                       double k) {
  const Prepared in = prepare(input, towers, size, alpha, beta, k);
  at::Tensor out = at::empty_like(in.x, in.x.options(), in.format);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, in.x.scalar_type(), "tower_lrn_forward", [&] {
    const scalar_t* x = in.x.const_data_ptr<scalar_t>();
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    if (in.channels_last) {
      forward_channels_last<scalar_t>(x, y, in.lay.outer * in.lay.pixels, in.lay.channels, in.lrn);
    } else {
      forward_kernel<scalar_t>(x, y, in.lay, in.lrn);
    }
  });
  return out;
}

at::Tensor lrn_backward(const at::Tensor& grad_output, const at::Tensor& input, int64_t towers, int64_t size,
                        double alpha, double beta, double k) {
  TORCH_CHECK(grad_output.sizes() == input.sizes() && grad_output.scalar_type() == input.scalar_type(),
              "tower LRN kernel: the gradient (", grad_output.sizes(), ", ", grad_output.scalar_type(),
              ") must match the input (", input.sizes(), ", ", input.scalar_type(), ")");
  const Prepared in = prepare(input, towers, size, alpha, beta, k);
  const at::Tensor grad = grad_output.contiguous(in.format);
  at::Tensor grad_x = at::empty_like(in.x, in.x.options(), in.format);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, in.x.scalar_type(), "tower_lrn_backward", [&] {
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const scalar_t* x = in.x.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
    if (in.channels_last) {
      backward_channels_last<scalar_t>(g, x, gx, in.lay.outer * in.lay.pixels, in.lay.channels, in.lrn);
    } else {
      backward_kernel<scalar_t>(g, x, gx, in.lay, in.lrn);
    }
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY(alexnet_towers_lrn, m) {
  m.def("forward(Tensor input, int towers, int size, float alpha, float beta, float k) -> Tensor");
  m.def(
      "backward(Tensor grad_output, Tensor input, int towers, int size, float alpha, float beta, float k)"
      " -> Tensor");
}

TORCH_LIBRARY_IMPL(alexnet_towers_lrn, CPU, m) {
  m.impl("forward", &lrn_forward);
  m.impl("backward", &lrn_backward);
}
