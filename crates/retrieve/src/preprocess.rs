//! OpenAI CLIP's image preprocessing: bicubic resize of the short side to the model's
//! size, center crop, scale to [0, 1], then normalize per channel with the statistics of
//! OpenAI's training set (HF `CLIPImageProcessor` defaults).

use candle_core::{Device, Result, Tensor};
use image::RgbImage;
use racm3_tokenize::vqgan::fit_image;

/// OpenAI's per-channel mean.
pub const OPENAI_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI's per-channel standard deviation.
pub const OPENAI_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Pixel values (b, 3, size, size) of `images`, any size or aspect: the short side is
/// resized to `size` (bicubic), the long side center-cropped.
pub fn pixel_values(images: &[RgbImage], size: u32, device: &Device) -> Result<Tensor> {
    let side = size as usize;
    let mut data = vec![0f32; images.len() * 3 * side * side];
    for (image, out) in images.iter().zip(data.chunks_exact_mut(3 * side * side)) {
        let fitted = fit_image(image, size);
        for (index, pixel) in fitted.pixels().enumerate() {
            for channel in 0..3 {
                let value = f32::from(pixel[channel]) / 255.0;
                out[channel * side * side + index] =
                    (value - OPENAI_MEAN[channel]) / OPENAI_STD[channel];
            }
        }
    }
    Tensor::from_vec(data, (images.len(), 3, side, side), device)
}
