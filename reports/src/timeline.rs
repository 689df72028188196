//! The timeline picture (`timeline.svg`): one lane per process, each operation a bar from
//! its invocation to its completion colored by outcome, nemesis faults as shaded bands
//! across the whole picture, and below it a panel of operation latencies over time.
//!
//! ```text
//!   legend
//!   nemesis   |▲crash n1 ░░░░░░░░░░░░░░░░▲restart|
//!   client 1  |▆▆ ▆▆▆ ▆  ░░ ▆▆▆▆▆▆▆▆▆▆ ░░░ ▆ ▆▆  |
//!   client 2  |  ▆▆▆▆ ▆▆ ░░░░ ▆ ▆▆▆▆▆▆░░░ ▆▆▆ ▆ |
//!             +-------------------------------+  time since the first event
//!   latency   |  ·  ■ ·  ░░░░·░░░░░░░░   · ■   |  (milliseconds, log scale)
//! ```
//!
//! The output is a pure function of the history: lanes are sorted, coordinates are
//! printed with one decimal, and sampling (above [`TIMELINE_OPERATIONS_MAX`] client
//! operations) keeps every k-th operation, so the same history gives the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use skiff_checker::{EventType, History, Op, Process};

use crate::document::escape_html;
use crate::operations::{
    describe_op, operations, process_name, Operation, NANOSECONDS_PER_MILLISECOND,
};

/// Above this many client operations, the timeline draws every k-th one only.
pub const TIMELINE_OPERATIONS_MAX: usize = 5000;

/// At most this many nemesis operations are drawn (the first ones); the fault log on the
/// page lists them too.
pub const TIMELINE_NEMESIS_OPERATIONS_MAX: usize = 1000;

/// Above this many client processes, clients share lanes (lane = rank modulo this).
pub const TIMELINE_CLIENT_LANES_MAX: usize = 64;

/// Width of the whole picture.
const WIDTH_PX: f64 = 1200.0;
/// Room on the left for lane names and latency tick labels.
const LEFT_MARGIN_PX: f64 = 120.0;
/// Room on the right so the last tick label fits.
const RIGHT_MARGIN_PX: f64 = 30.0;
/// Where the title line sits.
const TITLE_BASELINE_PX: f64 = 20.0;
/// Where the legend line sits.
const LEGEND_BASELINE_PX: f64 = 44.0;
/// Where the first lane starts.
const LANES_TOP_PX: f64 = 60.0;
/// Height of one process lane.
const LANE_HEIGHT_PX: f64 = 20.0;
/// Height of an operation bar inside its lane.
const BAR_HEIGHT_PX: f64 = 12.0;
/// Narrowest bar drawn, so that instantaneous operations stay visible.
const BAR_WIDTH_MIN_PX: f64 = 1.5;
/// Room below the lanes for the time axis tick labels and its title.
const TIME_AXIS_HEIGHT_PX: f64 = 44.0;
/// Height of the latency panel.
const LATENCY_PANEL_HEIGHT_PX: f64 = 160.0;
/// Room below the latency panel for its time axis labels.
const BOTTOM_MARGIN_PX: f64 = 44.0;
/// About how many ticks an axis gets.
const TIME_TICKS_TARGET: f64 = 10.0;
/// Latencies below this are drawn at it, since a log scale has no zero.
const LATENCY_FLOOR_MILLISECONDS: f64 = 0.001;
/// Room inside the latency panel above the highest and below the lowest decade, so dots
/// on a decade do not sit on the axis.
const LATENCY_PANEL_PADDING_PX: f64 = 8.0;
/// Radius of a send's dot in the latency panel.
const SEND_DOT_RADIUS_PX: f64 = 2.5;
/// Side of a poll's square in the latency panel.
const POLL_SQUARE_SIDE_PX: f64 = 5.0;
/// Nemesis band labels are drawn only when the band is at least this wide.
const BAND_LABEL_WIDTH_MIN_PX: f64 = 60.0;
/// Approximate width of one label character, for deciding whether a label fits.
const CHARACTER_WIDTH_PX: f64 = 6.5;

const _: () = assert!(TIMELINE_OPERATIONS_MAX > 0 && TIMELINE_CLIENT_LANES_MAX > 0);
const _: () = assert!(TIMELINE_NEMESIS_OPERATIONS_MAX > 0);
const _: () = assert!(BAR_HEIGHT_PX < LANE_HEIGHT_PX);
const _: () = assert!(2.0 * LATENCY_PANEL_PADDING_PX < LATENCY_PANEL_HEIGHT_PX);

const COLOR_OK: &str = "#2ca02c";
const COLOR_FAIL: &str = "#d62728";
const COLOR_INFO: &str = "#ff9f1a";
const COLOR_OPEN: &str = "#9e9e9e";
const COLOR_CRASH_BAND: &str = "#d62728";
const COLOR_FAULT_BAND: &str = "#7b4fc9";
const BAND_OPACITY: &str = "0.13";
/// Latency dots are translucent so that dense regions read darker.
const DOT_OPACITY: &str = "0.7";
const COLOR_GRID: &str = "#e4e4e4";
const COLOR_AXIS: &str = "#444444";
const FONT: &str = "font-family=\"sans-serif\" font-size=\"11\"";

/// The timeline picture and what it says about sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    /// The SVG document.
    pub svg: String,
    /// Client operations in the history.
    pub client_operations: usize,
    /// Client operations drawn: all of them, or every `sampling_step`-th.
    pub client_operations_drawn: usize,
    /// 1 when every operation is drawn, k when every k-th one is.
    pub sampling_step: usize,
    /// Client processes in the history.
    pub client_processes: usize,
}

/// A nemesis fault drawn as a band: from its start to its heal, or to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Band {
    start_ns: u64,
    end_ns: u64,
    healed: bool,
    crash: bool,
    label: String,
}

/// Maps times and latencies to pixels.
struct Scale {
    origin_ns: u64,
    span_ns: u64,
    plot_width_px: f64,
    unit: TimeUnit,
}

impl Scale {
    fn x(&self, time_ns: u64) -> f64 {
        let offset_ns = time_ns.saturating_sub(self.origin_ns) as f64;
        LEFT_MARGIN_PX + offset_ns / self.span_ns as f64 * self.plot_width_px
    }

    fn right(&self) -> f64 {
        LEFT_MARGIN_PX + self.plot_width_px
    }
}

/// The unit the time axis is labelled in, chosen so tick labels stay short.
#[derive(Debug, Clone, Copy)]
struct TimeUnit {
    name: &'static str,
    nanoseconds: u64,
}

const TIME_UNITS: [TimeUnit; 4] = [
    TimeUnit {
        name: "s",
        nanoseconds: 1_000_000_000,
    },
    TimeUnit {
        name: "ms",
        nanoseconds: 1_000_000,
    },
    TimeUnit {
        name: "µs",
        nanoseconds: 1_000,
    },
    TimeUnit {
        name: "ns",
        nanoseconds: 1,
    },
];

/// Which lane each process is drawn in: nemesis first, then clients by number.
struct Lanes {
    by_process: BTreeMap<Process, usize>,
    names: Vec<String>,
}

/// Draws the timeline of `history`.
pub fn render_timeline(history: &History) -> Timeline {
    let all = operations(history);
    let client_operations: Vec<&Operation> = all
        .iter()
        .filter(|operation| operation.process != Process::Nemesis)
        .collect();
    let nemesis_operations: Vec<&Operation> = all
        .iter()
        .filter(|operation| operation.process == Process::Nemesis)
        .take(TIMELINE_NEMESIS_OPERATIONS_MAX)
        .collect();
    let sampling_step = client_operations
        .len()
        .div_ceil(TIMELINE_OPERATIONS_MAX)
        .max(1);
    let drawn: Vec<&Operation> = client_operations
        .iter()
        .copied()
        .step_by(sampling_step)
        .collect();
    assert!(drawn.len() <= TIMELINE_OPERATIONS_MAX);
    let lanes = lanes(history);
    let client_processes = lanes
        .by_process
        .keys()
        .filter(|p| **p != Process::Nemesis)
        .count();
    let scale = scale(history);
    let bands = bands(&nemesis_operations, history_end_ns(history));

    let lanes_bottom = LANES_TOP_PX + lanes.names.len() as f64 * LANE_HEIGHT_PX;
    let latency_top = lanes_bottom + TIME_AXIS_HEIGHT_PX;
    let latency_bottom = latency_top + LATENCY_PANEL_HEIGHT_PX;
    let height = latency_bottom + BOTTOM_MARGIN_PX;

    let mut svg = String::new();
    let _ = writeln!(svg, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" {FONT}>",
        w = px(WIDTH_PX),
        h = px(height),
    );
    let _ = writeln!(
        svg,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        px(WIDTH_PX),
        px(height)
    );
    let title = title_text(
        client_operations.len(),
        drawn.len(),
        sampling_step,
        client_processes,
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        px(LEFT_MARGIN_PX),
        px(TITLE_BASELINE_PX),
        escape_html(&title)
    );
    draw_legend(&mut svg);
    draw_lane_backgrounds(&mut svg, &lanes, &scale);
    draw_time_grid(&mut svg, &scale, LANES_TOP_PX, lanes_bottom, true);
    draw_time_grid(&mut svg, &scale, latency_top, latency_bottom, false);
    draw_bands(&mut svg, &bands, &scale, &lanes, latency_bottom);
    draw_nemesis_markers(&mut svg, &nemesis_operations, &scale, &lanes);
    draw_bars(&mut svg, &drawn, &scale, &lanes, history_end_ns(history));
    draw_latency_panel(&mut svg, &drawn, &scale, latency_top, latency_bottom);
    let _ = writeln!(svg, "</svg>");
    Timeline {
        svg,
        client_operations: client_operations.len(),
        client_operations_drawn: drawn.len(),
        sampling_step,
        client_processes,
    }
}

fn title_text(total: usize, drawn: usize, sampling_step: usize, clients: usize) -> String {
    let mut title = format!("Timeline: {total} client operations by {clients} clients");
    if sampling_step > 1 {
        title.push_str(&format!(" (sampled: 1 in {sampling_step}, {drawn} drawn)"));
    }
    title
}

/// Coordinates and sizes are printed with one decimal, which is exact enough and stable.
fn px(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    // Avoids printing "-0.0", which would differ from "0.0" for the same picture.
    format!("{:.1}", rounded + 0.0)
}

fn history_end_ns(history: &History) -> u64 {
    history
        .events()
        .iter()
        .map(|event| event.time_ns)
        .max()
        .unwrap_or(0)
}

fn scale(history: &History) -> Scale {
    let origin_ns = history
        .events()
        .iter()
        .map(|event| event.time_ns)
        .min()
        .unwrap_or(0);
    let span_ns = history_end_ns(history).saturating_sub(origin_ns).max(1);
    let unit = TIME_UNITS
        .iter()
        .copied()
        .find(|unit| span_ns >= unit.nanoseconds)
        .unwrap_or(TIME_UNITS[TIME_UNITS.len() - 1]);
    Scale {
        origin_ns,
        span_ns,
        plot_width_px: WIDTH_PX - LEFT_MARGIN_PX - RIGHT_MARGIN_PX,
        unit,
    }
}

fn lanes(history: &History) -> Lanes {
    let mut processes: Vec<Process> = history.events().iter().map(|event| event.process).collect();
    processes.sort();
    processes.dedup();
    let clients: Vec<Process> = processes
        .iter()
        .copied()
        .filter(|process| *process != Process::Nemesis)
        .collect();
    let mut by_process = BTreeMap::new();
    let mut names = vec![process_name(Process::Nemesis)];
    by_process.insert(Process::Nemesis, 0);
    let folded = clients.len() > TIMELINE_CLIENT_LANES_MAX;
    for (rank, client) in clients.iter().enumerate() {
        let lane = rank % TIMELINE_CLIENT_LANES_MAX;
        by_process.insert(*client, lane + 1);
        if rank < TIMELINE_CLIENT_LANES_MAX {
            names.push(if folded {
                format!("shared lane {}", lane + 1)
            } else {
                process_name(*client)
            });
        }
    }
    Lanes { by_process, names }
}

/// Pairs each crash with the next restart of the same node, and each fault with the
/// next heal of the same description (or, failing that, the oldest open fault). Faults
/// never healed run to the end of the history.
fn bands(nemesis_operations: &[&Operation], end_ns: u64) -> Vec<Band> {
    let mut bands: Vec<Band> = Vec::new();
    let mut open_crashes: BTreeMap<String, usize> = BTreeMap::new();
    let mut open_faults: Vec<usize> = Vec::new();
    for operation in nemesis_operations {
        let time_ns = operation.start_ns;
        match &operation.op {
            Op::Crash { node } => {
                open_crashes.insert(node.clone(), bands.len());
                bands.push(open_band(time_ns, end_ns, true, format!("crash {node}")));
            }
            Op::Fault { description } => {
                open_faults.push(bands.len());
                bands.push(open_band(time_ns, end_ns, false, description.clone()));
            }
            Op::Restart { node } => {
                if let Some(position) = open_crashes.remove(node) {
                    close_band(&mut bands[position], time_ns);
                }
            }
            Op::Heal { description } => {
                let matching = open_faults
                    .iter()
                    .position(|band| bands[*band].label == *description)
                    .or(if open_faults.is_empty() {
                        None
                    } else {
                        Some(0)
                    });
                if let Some(position) = matching {
                    let band = open_faults.remove(position);
                    close_band(&mut bands[band], time_ns);
                }
            }
            _ => {}
        }
    }
    bands
}

fn open_band(start_ns: u64, end_ns: u64, crash: bool, label: String) -> Band {
    Band {
        start_ns,
        end_ns: end_ns.max(start_ns),
        healed: false,
        crash,
        label,
    }
}

fn close_band(band: &mut Band, end_ns: u64) {
    band.end_ns = end_ns.max(band.start_ns);
    band.healed = true;
}

fn outcome_color(completion: Option<(u64, EventType)>) -> &'static str {
    match completion {
        Some((_, EventType::Ok)) => COLOR_OK,
        Some((_, EventType::Fail)) => COLOR_FAIL,
        Some((_, EventType::Info)) => COLOR_INFO,
        Some((_, EventType::Invoke)) | None => COLOR_OPEN,
    }
}

fn outcome_name(completion: Option<(u64, EventType)>) -> &'static str {
    match completion {
        Some((_, EventType::Ok)) => "ok",
        Some((_, EventType::Fail)) => "fail",
        Some((_, EventType::Info)) => "info",
        Some((_, EventType::Invoke)) | None => "never completed",
    }
}

fn draw_legend(svg: &mut String) {
    let mut x = LEFT_MARGIN_PX;
    let y = LEGEND_BASELINE_PX;
    let swatches: [(&str, &str, &str); 6] = [
        (COLOR_OK, "1", "ok"),
        (COLOR_FAIL, "1", "fail"),
        (COLOR_INFO, "1", "info (indeterminate)"),
        (COLOR_OPEN, "1", "never completed"),
        (COLOR_CRASH_BAND, "0.3", "node crashed"),
        (COLOR_FAULT_BAND, "0.3", "fault active"),
    ];
    for (color, opacity, label) in swatches {
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" fill=\"{color}\" fill-opacity=\"{opacity}\"/>",
            px(x),
            px(y - 9.0)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\">{label}</text>",
            px(x + 18.0),
            px(y)
        );
        x += 18.0 + label.chars().count() as f64 * CHARACTER_WIDTH_PX + 16.0;
    }
    let _ = writeln!(
        svg,
        "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{COLOR_AXIS}\"/>",
        px(x + 5.0),
        px(y - 4.0),
        px(SEND_DOT_RADIUS_PX + 1.0)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\">send latency</text>",
        px(x + 14.0),
        px(y)
    );
    x += 14.0 + 12.0 * CHARACTER_WIDTH_PX + 16.0;
    let _ = writeln!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"7\" height=\"7\" fill=\"{COLOR_AXIS}\"/>",
        px(x + 1.5),
        px(y - 7.5)
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\">poll latency</text>",
        px(x + 14.0),
        px(y)
    );
}

fn draw_lane_backgrounds(svg: &mut String, lanes: &Lanes, scale: &Scale) {
    for (lane, name) in lanes.names.iter().enumerate() {
        let top = LANES_TOP_PX + lane as f64 * LANE_HEIGHT_PX;
        if lane % 2 == 1 {
            let _ = writeln!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#f7f7f7\"/>",
                px(LEFT_MARGIN_PX),
                px(top),
                px(scale.plot_width_px),
                px(LANE_HEIGHT_PX)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            px(LEFT_MARGIN_PX - 8.0),
            px(top + LANE_HEIGHT_PX / 2.0 + 4.0),
            escape_html(name)
        );
    }
}

/// Vertical grid lines at each time tick between `top` and `bottom`, with the axis line,
/// tick labels and (when `with_title`) the axis title below.
fn draw_time_grid(svg: &mut String, scale: &Scale, top: f64, bottom: f64, with_title: bool) {
    let span_in_unit = scale.span_ns as f64 / scale.unit.nanoseconds as f64;
    let step = nice_step(span_in_unit / TIME_TICKS_TARGET);
    let decimals = decimals_for(step);
    let ticks = (span_in_unit / step).floor() as u64;
    for tick in 0..=ticks {
        let value = tick as f64 * step;
        let time_ns = scale.origin_ns + (value * scale.unit.nanoseconds as f64).round() as u64;
        let x = scale.x(time_ns);
        let _ = writeln!(
            svg,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{COLOR_GRID}\"/>",
            px(top),
            px(bottom),
            x = px(x)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{COLOR_AXIS}\">{value:.decimals$}</text>",
            px(x),
            px(bottom + 14.0)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{COLOR_AXIS}\"/>",
        px(LEFT_MARGIN_PX),
        px(scale.right()),
        y = px(bottom)
    );
    if with_title {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{COLOR_AXIS}\">time since the first event ({})</text>",
            px(LEFT_MARGIN_PX + scale.plot_width_px / 2.0),
            px(bottom + 30.0),
            scale.unit.name
        );
    }
}

/// The smallest of 1, 2 and 5 times a power of ten that is at least `rough`.
fn nice_step(rough: f64) -> f64 {
    let rough = if rough.is_finite() && rough > 0.0 {
        rough
    } else {
        1.0
    };
    let power = 10f64.powi(rough.log10().floor() as i32);
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|multiple| multiple * power)
        .find(|step| *step >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * power)
}

fn decimals_for(step: f64) -> usize {
    if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    }
}

fn draw_bands(svg: &mut String, bands: &[Band], scale: &Scale, lanes: &Lanes, bottom: f64) {
    let nemesis_top = LANES_TOP_PX + lanes.by_process[&Process::Nemesis] as f64 * LANE_HEIGHT_PX;
    for band in bands {
        let color = if band.crash {
            COLOR_CRASH_BAND
        } else {
            COLOR_FAULT_BAND
        };
        let left = scale.x(band.start_ns);
        let width = (scale.x(band.end_ns) - left).max(BAR_WIDTH_MIN_PX);
        let until = if band.healed { "" } else { " (never healed)" };
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\" fill-opacity=\"{BAND_OPACITY}\"><title>{}{until}</title></rect>",
            px(left),
            px(LANES_TOP_PX),
            px(width),
            px(bottom - LANES_TOP_PX),
            escape_html(&band.label)
        );
        // A label stops where the next band starts, so overlapping faults stay readable.
        let next_start = bands
            .iter()
            .map(|other| scale.x(other.start_ns))
            .filter(|other_left| *other_left > left)
            .fold(f64::MAX, f64::min);
        let room = width.min(next_start - left);
        if room >= BAND_LABEL_WIDTH_MIN_PX {
            let label = truncate_label(&band.label, room - 12.0);
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
                px(left + 6.0),
                px(nemesis_top + LANE_HEIGHT_PX / 2.0 + 4.0),
                escape_html(&label)
            );
        }
    }
}

/// The label cut to fit `room_px`, ending with an ellipsis when cut.
fn truncate_label(label: &str, room_px: f64) -> String {
    let characters = (room_px / CHARACTER_WIDTH_PX).floor().max(1.0) as usize;
    if label.chars().count() <= characters {
        return label.to_string();
    }
    let mut cut: String = label.chars().take(characters.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn draw_nemesis_markers(svg: &mut String, nemesis: &[&Operation], scale: &Scale, lanes: &Lanes) {
    let top = LANES_TOP_PX + lanes.by_process[&Process::Nemesis] as f64 * LANE_HEIGHT_PX;
    for operation in nemesis {
        let color = match operation.op {
            Op::Crash { .. } => COLOR_CRASH_BAND,
            Op::Fault { .. } => COLOR_FAULT_BAND,
            _ => COLOR_OK,
        };
        let x = scale.x(operation.start_ns);
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"3\" height=\"{}\" fill=\"{color}\"><title>{}</title></rect>",
            px(x - 1.5),
            px(top + 2.0),
            px(LANE_HEIGHT_PX - 4.0),
            escape_html(&describe_op(&operation.op))
        );
    }
}

fn draw_bars(svg: &mut String, drawn: &[&Operation], scale: &Scale, lanes: &Lanes, end_ns: u64) {
    for operation in drawn {
        let lane = lanes.by_process[&operation.process];
        let top =
            LANES_TOP_PX + lane as f64 * LANE_HEIGHT_PX + (LANE_HEIGHT_PX - BAR_HEIGHT_PX) / 2.0;
        let left = scale.x(operation.start_ns);
        let finish_ns = operation.completion.map_or(end_ns, |(time_ns, _)| time_ns);
        let width = (scale.x(finish_ns) - left).max(BAR_WIDTH_MIN_PX);
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>#{} {} {}</title></rect>",
            px(left),
            px(top),
            px(width),
            px(BAR_HEIGHT_PX),
            outcome_color(operation.completion),
            operation.invoke_index,
            operation.function,
            outcome_name(operation.completion)
        );
    }
}

fn latency_milliseconds(operation: &Operation) -> Option<f64> {
    let latency_ns = operation.latency_ns()?;
    let milliseconds = latency_ns as f64 / NANOSECONDS_PER_MILLISECOND as f64;
    Some(milliseconds.max(LATENCY_FLOOR_MILLISECONDS))
}

fn draw_latency_panel(
    svg: &mut String,
    drawn: &[&Operation],
    scale: &Scale,
    top: f64,
    bottom: f64,
) {
    let points: Vec<(&Operation, f64)> = drawn
        .iter()
        .filter(|operation| matches!(operation.function, "send" | "poll"))
        .filter_map(|operation| Some((*operation, latency_milliseconds(operation)?)))
        .collect();
    let (lowest, highest) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(low, high), (_, ms)| {
            (low.min(*ms), high.max(*ms))
        });
    let (low_decade, high_decade) = if points.is_empty() {
        (0, 1)
    } else {
        let low = lowest.log10().floor() as i32;
        let high = (highest.log10().ceil() as i32).max(low + 1);
        (low, high)
    };
    let y = |milliseconds: f64| {
        let fraction =
            (milliseconds.log10() - f64::from(low_decade)) / f64::from(high_decade - low_decade);
        let inner_bottom = bottom - LATENCY_PANEL_PADDING_PX;
        let inner_top = top + LATENCY_PANEL_PADDING_PX;
        inner_bottom - fraction * (inner_bottom - inner_top)
    };
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" font-weight=\"bold\">latency of sends and polls (ms, log scale)</text>",
        px(LEFT_MARGIN_PX),
        px(top - 6.0)
    );
    for decade in low_decade..=high_decade {
        let y_px = y(10f64.powi(decade));
        let _ = writeln!(
            svg,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{COLOR_GRID}\"/>",
            px(LEFT_MARGIN_PX),
            px(scale.right()),
            y = px(y_px)
        );
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{COLOR_AXIS}\">{} ms</text>",
            px(LEFT_MARGIN_PX - 8.0),
            px(y_px + 4.0),
            power_of_ten(decade)
        );
    }
    let _ = writeln!(
        svg,
        "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{COLOR_AXIS}\"/>",
        px(top),
        px(bottom),
        x = px(LEFT_MARGIN_PX)
    );
    for (operation, milliseconds) in points {
        let x = scale.x(operation.start_ns);
        let color = outcome_color(operation.completion);
        if operation.function == "send" {
            let _ = writeln!(
                svg,
                "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{color}\" fill-opacity=\"{DOT_OPACITY}\"/>",
                px(x),
                px(y(milliseconds)),
                px(SEND_DOT_RADIUS_PX)
            );
        } else {
            let half = POLL_SQUARE_SIDE_PX / 2.0;
            let _ = writeln!(
                svg,
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\" fill-opacity=\"{DOT_OPACITY}\"/>",
                px(x - half),
                px(y(milliseconds) - half),
                px(POLL_SQUARE_SIDE_PX),
                px(POLL_SQUARE_SIDE_PX)
            );
        }
    }
}

/// Ten to the power `exponent`, written exactly: `0.001`, `1`, `100`.
fn power_of_ten(exponent: i32) -> String {
    if exponent >= 0 {
        format!("1{}", "0".repeat(exponent.unsigned_abs() as usize))
    } else {
        format!("0.{}1", "0".repeat(exponent.unsigned_abs() as usize - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(30.0), 50.0);
        assert!((nice_step(0.013) - 0.02).abs() < 1e-12);
        assert_eq!(decimals_for(0.02), 2);
        assert_eq!(decimals_for(5.0), 0);
    }

    #[test]
    fn labels_are_cut_with_an_ellipsis() {
        assert_eq!(truncate_label("crash n1", 100.0), "crash n1");
        assert_eq!(truncate_label("partition n2 from n1", 6.5 * 5.0), "part…");
    }

    #[test]
    fn powers_of_ten_are_written_exactly() {
        assert_eq!(power_of_ten(-3), "0.001");
        assert_eq!(power_of_ten(0), "1");
        assert_eq!(power_of_ten(2), "100");
    }

    #[test]
    fn pixels_never_print_negative_zero() {
        assert_eq!(px(-0.01), "0.0");
        assert_eq!(px(12.345), "12.3");
    }
}
