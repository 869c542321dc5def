//! Slide export: the centre view as a PNG at twice the screen's resolution. A screenshot of the
//! window only has the screen's pixels, so the view is laid out once more in an offscreen egui
//! context of the centre's size in points at twice the screen's pixels per point (text and
//! lines drawn sharp at that density, not scaled up), tessellated on the UI thread, and
//! rendered with `egui_wgpu` into a texture on a named worker, which reads it back and writes
//! the PNG. F12 (or Ctrl+Shift+S) writes `slides/step-NN.png` in the working directory during
//! a lecture (NN: the step) and `slides/view-NN.png` (the first free NN) otherwise; the File
//! menu has the same and "Export slide as..." with a file dialog.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Duration;

use egui::epaint::ClippedPrimitive;
use egui::{Color32, TexturesDelta};
use egui_wgpu::wgpu;

use super::waker::{Waker, waker};

/// The slide's pixels per screen pixel.
pub const SCALE: f32 = 2.0;

/// Offscreen passes before the one rendered (layouts that measure themselves settle).
const SETTLING_PASSES: usize = 2;

/// The largest texture side asked of the offscreen context (wgpu's default limit).
const MAX_TEXTURE_SIDE: usize = 8192;

/// How long the worker waits for the GPU (a software rasterizer is slow on a large slide).
const GPU_TIMEOUT: Duration = Duration::from_secs(60);

/// One laid-out and tessellated frame of the view, ready to render.
pub struct SlideFrame {
    primitives: Vec<ClippedPrimitive>,
    /// Every pass's texture changes, in order (the first holds the font atlas).
    textures: Vec<TexturesDelta>,
    size_in_pixels: [u32; 2],
    pixels_per_point: f32,
    background: Color32,
}

impl SlideFrame {
    /// The PNG's size in pixels.
    pub fn size_in_pixels(&self) -> [u32; 2] {
        self.size_in_pixels
    }
}

/// Lays out `draw` in a fresh context styled as `ctx`, on a screen of `size` points at
/// [`SCALE`] times `ctx`'s pixels per point, and tessellates the last pass.
pub fn lay_out(
    ctx: &egui::Context,
    size: egui::Vec2,
    mut draw: impl FnMut(&mut egui::Ui),
) -> SlideFrame {
    let pixels_per_point = SCALE * ctx.pixels_per_point();
    let offscreen = egui::Context::default();
    let mut options = ctx.options(|o| o.clone());
    options.zoom_factor = 1.0;
    offscreen.options_mut(|o| *o = options);
    offscreen.set_fonts(ctx.fonts(|f| f.definitions().clone()));
    let background = ctx.global_style().visuals.panel_fill;
    let mut textures = Vec::new();
    let mut shapes = Vec::new();
    for _ in 0..=SETTLING_PASSES {
        let mut input = egui::RawInput {
            screen_rect: Some(egui::Rect::from_min_size(egui::Pos2::ZERO, size)),
            max_texture_side: Some(MAX_TEXTURE_SIDE),
            ..Default::default()
        };
        if let Some(viewport) = input.viewports.get_mut(&egui::ViewportId::ROOT) {
            viewport.native_pixels_per_point = Some(pixels_per_point);
        }
        let output = offscreen.run_ui(input, |ui| {
            egui::CentralPanel::no_frame()
                .frame(egui::Frame::NONE.fill(background))
                .show(ui, |ui| draw(ui));
        });
        textures.push(output.textures_delta);
        shapes = output.shapes;
    }
    let primitives = offscreen.tessellate(shapes, pixels_per_point);
    let pixels = size * pixels_per_point;
    SlideFrame {
        primitives,
        textures,
        size_in_pixels: [pixels.x.round() as u32, pixels.y.round() as u32],
        pixels_per_point,
        background,
    }
}

/// The PNG a key press writes in `folder`: `step-NN.png` for lecture step `step` (0-based),
/// else `view-NN.png` with the first NN not taken.
pub fn default_path(folder: &Path, step: Option<usize>) -> PathBuf {
    match step {
        Some(index) => folder.join(format!("step-{:02}.png", index + 1)),
        None => (1..)
            .map(|n| folder.join(format!("view-{n:02}.png")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| folder.join("view.png")),
    }
}

/// Picks the adapter to render on: a real GPU before a software one, Vulkan, Metal or DX12
/// before GL.
fn pick_adapter(
    adapters: &[wgpu::Adapter],
    _surface: Option<&wgpu::Surface<'_>>,
) -> Result<wgpu::Adapter, String> {
    let rank = |a: &wgpu::Adapter| {
        let info = a.get_info();
        let device = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
            wgpu::DeviceType::Cpu => 3,
        };
        let backend = match info.backend {
            wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
            _ => 1,
        };
        (device, backend)
    };
    adapters
        .iter()
        .min_by_key(|a| rank(a))
        .cloned()
        .ok_or_else(|| "no graphics adapter found".to_string())
}

/// Renders `frame` into an RGBA image on a device of its own.
pub fn render(frame: &SlideFrame) -> Result<image::RgbaImage, String> {
    let mut create = egui_wgpu::WgpuSetupCreateNew::without_display_handle();
    create.native_adapter_selector = Some(std::sync::Arc::new(pick_adapter));
    let setup = egui_wgpu::WgpuSetup::CreateNew(create);
    let instance = pollster::block_on(setup.new_instance());
    let config = egui_wgpu::WgpuConfiguration {
        wgpu_setup: setup,
        ..Default::default()
    };
    let options = egui_wgpu::RendererOptions {
        dithering: false,
        ..Default::default()
    };
    let state = pollster::block_on(egui_wgpu::RenderState::create(
        &config, &instance, None, options,
    ))
    .map_err(|e| format!("no GPU for the slide: {e}"))?;
    let (device, queue) = (&state.device, &state.queue);
    let mut renderer = state.renderer.write();
    // Each pass's new textures, then what it freed after painting (the last pass's frees
    // come after the slide is drawn: none of them matter).
    let passes = frame.textures.len();
    for (pass, delta) in frame.textures.iter().enumerate() {
        for (id, images) in &delta.set {
            for image in images {
                renderer.update_texture(device, queue, *id, image);
            }
        }
        if pass + 1 < passes {
            for id in &delta.free {
                renderer.free_texture(id);
            }
        }
    }
    let [width, height] = frame.size_in_pixels;
    let limit = device.limits().max_texture_dimension_2d;
    if width == 0 || height == 0 || width > limit || height > limit {
        return Err(format!(
            "a {width}×{height} slide does not fit this GPU's {limit} px textures"
        ));
    }
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("quantscope slide"),
        size: wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: state.target_format,
        usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
        view_formats: &[],
    });
    let screen = egui_wgpu::ScreenDescriptor {
        size_in_pixels: frame.size_in_pixels,
        pixels_per_point: frame.pixels_per_point,
    };
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("quantscope slide"),
    });
    let callbacks =
        renderer.update_buffers(device, queue, &mut encoder, &frame.primitives, &screen);
    let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
    let [r, g, b, a] = frame.background.to_normalized_gamma_f32();
    {
        let mut pass = encoder
            .begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("quantscope slide"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color {
                            r: f64::from(r),
                            g: f64::from(g),
                            b: f64::from(b),
                            a: f64::from(a),
                        }),
                        store: wgpu::StoreOp::Store,
                    },
                    depth_slice: None,
                })],
                ..Default::default()
            })
            .forget_lifetime();
        renderer.render(&mut pass, &frame.primitives, &screen);
    }
    // The rows of a buffer copy are padded to wgpu's alignment.
    let row = width as usize * 4;
    let align = wgpu::COPY_BYTES_PER_ROW_ALIGNMENT as usize;
    let padded_row = row.div_ceil(align) * align;
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("quantscope slide readback"),
        size: (padded_row * height as usize) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &buffer,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded_row as u32),
                rows_per_image: None,
            },
        },
        wgpu::Extent3d {
            width,
            height,
            depth_or_array_layers: 1,
        },
    );
    let submitted = queue.submit(callbacks.into_iter().chain([encoder.finish()]));
    let (mapped_send, mapped) = sync_channel(1);
    buffer
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |result| {
            let _ = mapped_send.send(result);
        });
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(submitted),
            timeout: Some(GPU_TIMEOUT),
        })
        .map_err(|e| format!("the GPU did not finish the slide: {e}"))?;
    mapped
        .recv()
        .map_err(|_| "the GPU dropped the slide".to_string())?
        .map_err(|e| format!("could not read the slide back: {e}"))?;
    let data = buffer
        .slice(..)
        .get_mapped_range()
        .map_err(|e| format!("could not read the slide back: {e}"))?;
    let pixels: Vec<u8> = data
        .chunks_exact(padded_row)
        .flat_map(|r| &r[..row])
        .copied()
        .collect();
    image::RgbaImage::from_raw(width, height, pixels)
        .ok_or_else(|| "the slide read back has an odd size".to_string())
}

/// Renders `frame` and writes it to `path` (creating its folder).
fn write_png(frame: &SlideFrame, path: &Path) -> Result<(), String> {
    let image = render(frame)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|e| format!("could not create {}: {e}", folder.display()))?;
    }
    image
        .save(path)
        .map_err(|e| format!("could not write {}: {e}", path.display()))
}

/// The app's slide exports: where the key writes, the one asked for, the one running.
pub struct SlideExports {
    /// The folder F12 writes into.
    pub folder: PathBuf,
    /// The file to write on this frame, once the centre view is laid out.
    due: Option<PathBuf>,
    running: Option<Receiver<Result<PathBuf, String>>>,
}

impl Default for SlideExports {
    fn default() -> Self {
        SlideExports {
            folder: PathBuf::from("slides"),
            due: None,
            running: None,
        }
    }
}

impl SlideExports {
    /// Asks for the centre view to be written to `path` on this frame.
    pub fn request(&mut self, path: PathBuf) {
        self.due = Some(path);
    }

    /// Asks for the key's file for lecture step `step` (None outside a lecture).
    pub fn request_default(&mut self, step: Option<usize>) {
        self.request(default_path(&self.folder, step));
    }

    /// Checks the slide keys (F12, Ctrl+Shift+S).
    pub fn shortcut(&mut self, ctx: &egui::Context, step: Option<usize>) {
        let pressed = ctx.input_mut(|i| {
            use egui::{Key, KeyboardShortcut, Modifiers};
            i.key_pressed(Key::F12)
                || i.consume_shortcut(&KeyboardShortcut::new(
                    Modifiers::COMMAND | Modifiers::SHIFT,
                    Key::S,
                ))
        });
        if pressed {
            self.request_default(step);
        }
    }

    /// The File menu's items.
    pub fn menu_ui(&mut self, ui: &mut egui::Ui, step: Option<usize>) {
        let key_file = default_path(&self.folder, step);
        if ui
            .button("Export slide, 2× (F12)")
            .on_hover_text(format!(
                "The centre view at twice the screen's resolution, to {}",
                key_file.display()
            ))
            .clicked()
        {
            ui.close();
            self.request(key_file);
        }
        if ui
            .button("Export slide as...")
            .on_hover_text("The centre view at twice the screen's resolution (PNG)")
            .clicked()
        {
            ui.close();
            if let Some(path) = rfd::FileDialog::new()
                .add_filter("PNG", &["png"])
                .set_file_name("slide.png")
                .save_file()
            {
                self.request(path);
            }
        }
    }

    /// The file asked for on this frame, taken.
    pub fn take_due(&mut self) -> Option<PathBuf> {
        self.due.take()
    }

    /// If a slide was asked for, lays out the centre view `draw` (`size` points, scrolled to
    /// the top as on screen) and starts writing it.
    pub fn export_if_due(
        &mut self,
        ctx: &egui::Context,
        size: egui::Vec2,
        mut draw: impl FnMut(&mut egui::Ui),
    ) -> Result<(), String> {
        let Some(path) = self.take_due() else {
            return Ok(());
        };
        let frame = lay_out(ctx, size, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("centre")
                .auto_shrink(false)
                .show(ui, |ui| draw(ui));
        });
        self.start(frame, path, waker(ctx))
    }

    /// Renders `frame` to `path` on a named worker, which wakes the UI when done.
    pub fn start(&mut self, frame: SlideFrame, path: PathBuf, wake: Waker) -> Result<(), String> {
        let (sender, receiver) = sync_channel(1);
        std::thread::Builder::new()
            .name("quantscope-slide".into())
            .spawn(move || {
                let result = write_png(&frame, &path).map(|()| path);
                let _ = sender.send(result);
                wake();
            })
            .map_err(|e| format!("could not start the slide export: {e}"))?;
        self.running = Some(receiver);
        Ok(())
    }

    /// Whether a slide is being rendered.
    pub fn is_busy(&self) -> bool {
        self.running.is_some() || self.due.is_some()
    }

    /// The outcome of the running export once it has finished: the notice to show, or the
    /// error.
    pub fn poll(&mut self) -> Option<Result<String, String>> {
        let result = match self.running.as_ref()?.try_recv() {
            Ok(result) => result,
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the worker stopped".to_string())
            }
        };
        self.running = None;
        Some(match result {
            Ok(path) => Ok(format!("saved slide {}", path.display())),
            Err(e) => Err(format!("could not export the slide: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_named_by_step_or_the_first_free_number() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            default_path(dir.path(), Some(8)),
            dir.path().join("step-09.png")
        );
        assert_eq!(
            default_path(dir.path(), None),
            dir.path().join("view-01.png")
        );
        std::fs::write(dir.path().join("view-01.png"), b"").unwrap();
        assert_eq!(
            default_path(dir.path(), None),
            dir.path().join("view-02.png")
        );
    }

    #[test]
    fn lays_out_at_twice_the_pixels_per_point() {
        let ctx = egui::Context::default();
        ctx.set_zoom_factor(1.25);
        for _ in 0..2 {
            let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
        }
        assert_eq!(ctx.pixels_per_point(), 1.25);
        let frame = lay_out(&ctx, egui::vec2(300.0, 200.0), |ui| {
            ui.label("S = (max − min) / 255");
        });
        assert_eq!(frame.size_in_pixels(), [750, 500]);
        assert!(!frame.primitives.is_empty());
        // The font atlas comes with the first pass.
        assert!(
            frame.textures[0]
                .set
                .contains_key(&egui::TextureId::default())
        );
    }
}
