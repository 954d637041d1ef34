//! The CPU backend's activation map, shared by its im2col convolutions (`cpu.rs`) and its
//! Winograd ones (`crate::nn::winograd`).

/// An activation map, `[b, h, w, c]` row-major.
#[derive(Clone)]
pub struct Act {
    pub data: Vec<f32>,
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Act {
    /// Pixel (`iy`, `ix`) of image `img` (its `c` channels) into `dst`, or zeros where the
    /// position lies outside the map (a convolution's zero padding).
    pub fn pixel_into(&self, img: usize, iy: isize, ix: isize, dst: &mut [f32]) {
        if iy < 0 || ix < 0 || iy >= self.h as isize || ix >= self.w as isize {
            dst.fill(0.0);
        } else {
            let s = ((img * self.h + iy as usize) * self.w + ix as usize) * self.c;
            dst.copy_from_slice(&self.data[s..s + self.c]);
        }
    }
}
