//! Thumbnails of image documents: a PNG at most [`EDGE`] pixels on its
//! longer side, made by the `image` crate (maintained; built with only the
//! PNG and JPEG decoders). Decoding is bounded ([`limits`]) so a small file
//! that claims enormous dimensions cannot take the worker's memory.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

/// The longer side of a thumbnail, in pixels.
pub const EDGE: u32 = 256;

/// Images larger than this (in bytes) get no thumbnail: the job reads the
/// whole image into memory to decode it.
pub const MAX_SOURCE_BYTES: u64 = 32 * 1024 * 1024;

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(12_000);
    limits.max_image_height = Some(12_000);
    limits.max_alloc = Some(256 * 1024 * 1024);
    limits
}

/// The thumbnail of `source` (a PNG or JPEG), as PNG bytes.
pub fn png(source: &[u8]) -> Result<Vec<u8>, image::ImageError> {
    let mut reader = ImageReader::new(Cursor::new(source)).with_guessed_format()?;
    reader.limits(limits());
    let image = reader.decode()?;
    let thumbnail = image.thumbnail(EDGE, EDGE);
    let mut out = Cursor::new(Vec::new());
    thumbnail.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_image_becomes_a_small_png_that_keeps_its_shape() {
        let big = image::RgbImage::from_fn(1024, 512, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 0])
        });
        let mut source = Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(big)
            .write_to(&mut source, ImageFormat::Png)
            .unwrap();
        let png = png(source.get_ref()).unwrap();
        let thumbnail = image::load_from_memory(&png).unwrap();
        assert_eq!((thumbnail.width(), thumbnail.height()), (256, 128));
    }

    #[test]
    fn what_does_not_decode_is_an_error_not_a_panic() {
        assert!(png(b"\x89PNG\r\n\x1a\n not really").is_err());
        assert!(png(b"").is_err());
    }
}
