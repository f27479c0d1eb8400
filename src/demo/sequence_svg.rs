//! The demo's sequence diagram drawn as a self-contained SVG document: the participants,
//! step notes and messages of the mermaid text (`demo::mermaid`), laid out here without a
//! renderer. Participants are boxes at the top and the bottom joined by lifelines, each step
//! is a note band across all lifelines and each message a labelled arrow, in order. Styles
//! are presentation attributes and the text uses system fonts (sans-serif), so the file
//! loads nothing else.

use std::fmt::Write;

use crate::demo::{diagram_steps, Msg, Step, PARTICIPANTS};

const FONT: &str = r#"font-family="Helvetica, Arial, sans-serif" font-size="13""#;
/// Estimated advance of one character at 13 px (sans-serif averages a little less).
const CHAR_W: f64 = 7.0;
const MARGIN: f64 = 20.0;
const BOX_H: f64 = 36.0;
const BOX_MIN_W: f64 = 90.0;
const PAD: f64 = 12.0;
/// How far a note band reaches past the first and the last lifeline.
const OVERHANG: f64 = 20.0;
const NOTE_H: f64 = 26.0;
const MSG_H: f64 = 30.0;
const SELF_H: f64 = 38.0;
const SELF_W: f64 = 30.0;
const GAP: f64 = 10.0;

fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * CHAR_W
}

/// `s` as XML text or attribute value.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The participants in mermaid's order, (name, label): the declared ones, then any other
/// name a shown message uses, in order of first use (mermaid adds those implicitly).
fn participants(groups: &[(&Step, Vec<&Msg>)]) -> Vec<(String, String)> {
    let mut parts: Vec<(String, String)> = PARTICIPANTS
        .iter()
        .map(|(name, label)| (name.to_string(), label.to_string()))
        .collect();
    for m in groups.iter().flat_map(|(_, msgs)| msgs) {
        for name in [&m.from, &m.to] {
            if !parts.iter().any(|(n, _)| n == name) {
                parts.push((name.clone(), name.clone()));
            }
        }
    }
    parts
}

/// The sequence diagram of `messages`, one note per step, as an SVG document.
pub(crate) fn sequence_svg(steps: &[Step], messages: &[Msg]) -> String {
    let groups = diagram_steps(steps, messages);
    let parts = participants(&groups);
    let index = |name: &str| parts.iter().position(|(n, _)| n == name).unwrap_or(0);
    let notes: Vec<String> = groups
        .iter()
        .map(|(s, _)| format!("{}. {}", s.n, s.title))
        .collect();

    // Columns: neighbouring lifelines far enough apart for their boxes, then widened until
    // every label fits between its two lifelines and every note fits its band.
    let box_w: Vec<f64> = parts
        .iter()
        .map(|(_, label)| (text_w(label) + 2.0 * PAD).max(BOX_MIN_W))
        .collect();
    let last = parts.len() - 1;
    let mut gaps: Vec<f64> = box_w
        .windows(2)
        .map(|w| (w[0] + w[1]) / 2.0 + GAP)
        .collect();
    let mut needs: Vec<(usize, usize, f64)> = Vec::new();
    for m in groups.iter().flat_map(|(_, msgs)| msgs) {
        let (a, b) = (index(&m.from), index(&m.to));
        let need = text_w(&m.what) + 2.0 * PAD;
        if a != b {
            needs.push((a.min(b), a.max(b), need));
        } else if a < last {
            needs.push((a, a + 1, need + SELF_W));
        }
    }
    for note in &notes {
        needs.push((0, last, text_w(note) + 2.0 * PAD - 2.0 * OVERHANG));
    }
    needs.sort_by_key(|&(a, b, _)| b - a);
    for (a, b, need) in needs {
        let have: f64 = gaps[a..b].iter().sum();
        if have < need {
            let extra = (need - have) / (b - a) as f64;
            gaps[a..b].iter_mut().for_each(|g| *g += extra);
        }
    }
    let mut xs = vec![MARGIN + (box_w[0] / 2.0).max(OVERHANG)];
    for g in &gaps {
        xs.push(xs[xs.len() - 1] + g);
    }
    let mut right = xs[last] + (box_w[last] / 2.0).max(OVERHANG);

    // Rows, top to bottom.
    let mut body = String::new();
    let mut y = MARGIN + BOX_H + GAP;
    for ((_, msgs), note) in groups.iter().zip(&notes) {
        let (x0, x1) = (xs[0] - OVERHANG, xs[last] + OVERHANG);
        let w = (x1 - x0).max(text_w(note) + 2.0 * PAD);
        right = right.max(x0 + w);
        let _ = writeln!(
            body,
            r##"<g class="note"><rect x="{x0:.1}" y="{y:.1}" width="{w:.1}" height="{NOTE_H}" fill="#fff5ad" stroke="#aaaa33"/><text x="{:.1}" y="{:.1}" text-anchor="middle" {FONT}>{}</text></g>"##,
            x0 + w / 2.0,
            y + NOTE_H / 2.0 + 4.5,
            escape(note)
        );
        y += NOTE_H + GAP;
        for m in msgs {
            let (from, to) = (xs[index(&m.from)], xs[index(&m.to)]);
            let _ = write!(
                body,
                r#"<g class="message" data-from="{}" data-to="{}">"#,
                escape(&m.from),
                escape(&m.to)
            );
            let (label_x, label_y, anchor, line, h) = if from == to {
                right = right.max(from + SELF_W + 6.0 + text_w(&m.what));
                let (top, low) = (y + 10.0, y + SELF_H - 8.0);
                let line = format!(
                    "M{from:.1},{top:.1} H{:.1} V{low:.1} H{:.1}",
                    from + SELF_W,
                    from + 2.0
                );
                (
                    from + SELF_W + 6.0,
                    (top + low) / 2.0 + 4.5,
                    "start",
                    line,
                    SELF_H,
                )
            } else {
                let line = format!("M{from:.1},{:.1} H{to:.1}", y + 20.0);
                ((from + to) / 2.0, y + 13.0, "middle", line, MSG_H)
            };
            let _ = writeln!(
                body,
                r##"<text x="{label_x:.1}" y="{label_y:.1}" text-anchor="{anchor}" {FONT}>{}</text><path d="{line}" fill="none" stroke="#333" stroke-width="1.5" marker-end="url(#arrowhead)"/></g>"##,
                escape(&m.what)
            );
            y += h;
        }
    }
    let bottom = y + GAP;
    let width = right + MARGIN;
    let height = bottom + BOX_H + MARGIN;

    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}">
<title>asyncpay demo: messages between the parties</title>
<defs><marker id="arrowhead" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>
<rect width="100%" height="100%" fill="#ffffff"/>
"##
    );
    for x in &xs {
        let _ = writeln!(
            svg,
            r##"<line class="lifeline" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#999" stroke-width="1" stroke-dasharray="4 3"/>"##,
            MARGIN + BOX_H
        );
    }
    let boxes = |svg: &mut String, top: f64| {
        for (((name, label), x), w) in parts.iter().zip(&xs).zip(&box_w) {
            let _ = writeln!(
                svg,
                r##"<g class="participant" data-name="{}"><rect x="{:.1}" y="{top:.1}" width="{w:.1}" height="{BOX_H}" rx="3" fill="#eaeaff" stroke="#9370db"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" {FONT}>{}</text></g>"##,
                escape(name),
                x - w / 2.0,
                top + BOX_H / 2.0 + 4.5,
                escape(label)
            );
        }
    };
    boxes(&mut svg, MARGIN);
    svg.push_str(&body);
    boxes(&mut svg, bottom);
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::mermaid;

    fn step(n: usize, title: &str) -> Step {
        Step {
            n,
            name: "step",
            title: title.into(),
            started_ms: 0,
            started_us: 0,
            duration_ms: 0,
            details: vec![],
        }
    }

    fn msg(step: usize, from: &str, to: &str, what: &str) -> Msg {
        Msg {
            step,
            at_ms: 0.0,
            from: from.into(),
            to: to.into(),
            what: what.into(),
        }
    }

    /// Steps 1 and 3 have messages, step 2 none; one message names a step that does not
    /// exist; one names a participant that is not declared.
    fn sample() -> (Vec<Step>, Vec<Msg>) {
        let steps = vec![
            step(1, "A pays B <50000 sat> & \"goes\" offline"),
            step(2, "nothing is said"),
            step(
                3,
                "enforcement on chain: S sees the stale state, overrides it with the latest one \
                 and after the shared delay publishes the settlement of that state",
            ),
        ];
        let messages = vec![
            msg(1, "A", "S", "propose"),
            msg(1, "S", "A", "countersign"),
            msg(1, "A", "mailbox", "letter (age-encrypted to B)"),
            msg(3, "S", "watchtower", "a<b & \"c\""),
            msg(3, "S", "S", "self check"),
            msg(3, "S", "chain", "SE_1 (settlement)"),
            msg(9, "B", "S", "not shown"),
        ];
        (steps, messages)
    }

    /// Checks that `svg` is one well-formed element tree rooted at `<svg>`: tags balance,
    /// attributes are quoted and every `&` in text or attributes starts an entity.
    fn well_formed(svg: &str) -> Result<(), String> {
        fn text(s: &str) -> Result<(), String> {
            if s.contains('>') || s.contains('<') {
                return Err(format!("raw < or > in {s:?}"));
            }
            for (i, _) in s.match_indices('&') {
                let entity = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"];
                if !entity.iter().any(|e| s[i..].starts_with(e)) {
                    return Err(format!("bare & in {s:?}"));
                }
            }
            Ok(())
        }
        let (mut stack, mut rest, mut roots) = (Vec::<&str>::new(), svg, 0);
        while let Some(open) = rest.find('<') {
            text(&rest[..open])?;
            let close = open + rest[open..].find('>').ok_or("unclosed tag")?;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(top) if top == name => continue,
                    top => return Err(format!("</{name}> closes {top:?}")),
                }
            }
            let body = tag.strip_suffix('/').unwrap_or(tag);
            let name = body.split_whitespace().next().ok_or("empty tag")?;
            if stack.is_empty() {
                roots += 1;
                if roots > 1 || name != "svg" {
                    return Err(format!("root element {name}"));
                }
            }
            let mut attrs = body[name.len()..].trim_start();
            while !attrs.is_empty() {
                let (key, after) = attrs.split_once("=\"").ok_or("unquoted attribute")?;
                if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c == '"') {
                    return Err(format!("attribute name {key:?}"));
                }
                let (value, after) = after.split_once('"').ok_or("unclosed attribute")?;
                text(value)?;
                attrs = after.trim_start();
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        text(rest.trim())?;
        match (stack.is_empty(), roots) {
            (true, 1) => Ok(()),
            _ => Err(format!("unclosed {stack:?}")),
        }
    }

    /// The values of `attr` in order of appearance on elements of class `class`.
    fn attrs<'a>(svg: &'a str, class: &str, attr: &str) -> Vec<&'a str> {
        svg.split(&format!("class=\"{class}\""))
            .skip(1)
            .map(|s| {
                let tag = &s[..s.find('>').unwrap()];
                let v = &tag[tag.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2..];
                &v[..v.find('"').unwrap()]
            })
            .collect()
    }

    #[test]
    fn the_checker_rejects_what_is_not_well_formed() {
        assert!(well_formed(r#"<svg><g a="1"/><text>x &amp; y</text></svg>"#).is_ok());
        for bad in [
            "<svg><g></svg>",
            "<svg><g/>",
            "<svg></svg><svg></svg>",
            "<svg><text>a & b</text></svg>",
            r#"<svg><g a="x"y"/></svg>"#,
            "<svg a=1></svg>",
        ] {
            assert!(well_formed(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_svg_is_well_formed_and_escapes_every_label() {
        let (steps, messages) = sample();
        let svg = sequence_svg(&steps, &messages);
        well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(">a&lt;b &amp; &quot;c&quot;</text>"), "{svg}");
        assert!(svg.contains("A pays B &lt;50000 sat&gt; &amp; &quot;goes&quot; offline"));
        assert!(!svg.contains("a<b") && !svg.contains("\"c\""));
        assert_eq!(
            svg.matches("http").count(),
            1,
            "nothing external but the namespace"
        );
        assert_eq!(svg.matches("url(").count(), svg.matches("url(#").count());
    }

    #[test]
    fn one_arrow_per_shown_message_and_one_note_per_step_in_mermaid_order() {
        let (steps, messages) = sample();
        let (svg, text) = (sequence_svg(&steps, &messages), mermaid(&steps, &messages));
        let arrows: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("->>"))
            .map(|l| l.trim().split(": ").next().unwrap())
            .collect();
        let froms = attrs(&svg, "message", "data-from");
        let tos = attrs(&svg, "message", "data-to");
        let drawn: Vec<String> = froms
            .iter()
            .zip(&tos)
            .map(|(f, t)| format!("{f}->>{t}"))
            .collect();
        assert_eq!(drawn, arrows);
        assert_eq!(
            drawn.len(),
            6,
            "the message of the unknown step is left out"
        );
        assert_eq!(svg.matches("marker-end=").count(), 6);
        assert_eq!(
            svg.matches("class=\"note\"").count(),
            text.matches("Note over").count()
        );
        assert_eq!(
            svg.matches("class=\"note\"").count(),
            2,
            "no note for a silent step"
        );
        assert!(svg.find("1. A pays B").unwrap() < svg.find(">propose<").unwrap());
        assert!(svg.find(">propose<").unwrap() < svg.find(">countersign<").unwrap());
    }

    #[test]
    fn participants_are_drawn_in_mermaid_order_at_top_and_bottom() {
        let (steps, messages) = sample();
        let (svg, text) = (sequence_svg(&steps, &messages), mermaid(&steps, &messages));
        // Mermaid's order: the declared participants, then the others by first use.
        let mut order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("participant "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for line in text.lines().filter(|l| l.contains("->>")) {
            for name in line.trim().split(": ").next().unwrap().split("->>") {
                if !order.contains(&name) {
                    order.push(name);
                }
            }
        }
        assert_eq!(order, ["A", "S", "mailbox", "B", "chain", "watchtower"]);
        let boxes = attrs(&svg, "participant", "data-name");
        assert_eq!(boxes, [order.clone(), order].concat());
        assert!(svg.contains(">regtest chain</text>") && svg.contains(">A (payer)</text>"));
    }

    #[test]
    fn lifelines_leave_room_for_every_label_and_note() {
        let (steps, mut messages) = sample();
        let narrow = sequence_svg(&steps, &messages);
        let xs = |svg: &str| -> Vec<f64> {
            attrs(svg, "lifeline", "x1")
                .iter()
                .map(|x| x.parse().unwrap())
                .collect()
        };
        let x = xs(&narrow);
        assert_eq!(x.len(), 6);
        assert!(x.windows(2).all(|w| w[1] - w[0] >= BOX_MIN_W));
        let span = x[5] - x[0] + 2.0 * OVERHANG;
        assert!(span >= text_w(&format!("3. {}", steps[2].title)));
        messages[0].what = "a label much longer than any box is wide, to push A and S apart".into();
        let wide = xs(&sequence_svg(&steps, &messages));
        assert!(wide[1] - wide[0] >= text_w(&messages[0].what), "{wide:?}");
        assert!(wide[1] - wide[0] > x[1] - x[0]);
    }
}
