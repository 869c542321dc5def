//! Which tensor the app shows: a part (weight, input or output activation) of one row of the
//! model panel, and how the selection moves (keys, a rebuilt model, a reopened session).

use super::layers::LayerRow;

/// Which tensor of a layer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Weight,
    /// A recurrent layer's recurrence weights R.
    Recurrence,
    Input,
    Output,
}

impl Part {
    /// The name a session file stores.
    pub fn name(self) -> &'static str {
        match self {
            Part::Weight => "weight",
            Part::Recurrence => "recurrence",
            Part::Input => "input",
            Part::Output => "output",
        }
    }

    /// Whether the part is a weight tensor (W or R) rather than an activation.
    pub fn is_weight(self) -> bool {
        matches!(self, Part::Weight | Part::Recurrence)
    }

    /// The part a session file names (the weight when the name is unknown).
    pub fn from_name(name: Option<&str>) -> Part {
        match name {
            Some("recurrence") => Part::Recurrence,
            Some("input") => Part::Input,
            Some("output") => Part::Output,
            _ => Part::Weight,
        }
    }
}

/// The shown tensor: a part of the layer at index `layer` of the model panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    pub layer: usize,
    pub part: Part,
}

impl Selection {
    /// The weight of the first layer that has one.
    pub fn first_weight(layers: &[LayerRow]) -> Option<Selection> {
        let layer = layers.iter().position(|l| l.weight.is_some())?;
        Some(Selection {
            layer,
            part: Part::Weight,
        })
    }

    /// `part` of the layer of node `node`, if the layers have it.
    pub fn of_node(layers: &[LayerRow], node: &str, part: Part) -> Option<Selection> {
        let layer = layers.iter().position(|r| r.node == node)?;
        Some(Selection { layer, part })
    }

    /// The selected tensor's name, if its layer has that part.
    pub fn tensor(self, layers: &[LayerRow]) -> Option<&str> {
        let row = layers.get(self.layer)?;
        match self.part {
            Part::Weight => row.weight.as_deref(),
            Part::Recurrence => row.recurrence.as_deref(),
            Part::Input => row.input.as_deref(),
            Part::Output => row.output.as_deref(),
        }
    }

    /// The next (`delta` > 0) or previous quantizable layer from `from` (the first layer's
    /// weight when None), with the same part or another it has; None at either end.
    pub fn step(from: Option<Selection>, layers: &[LayerRow], delta: i32) -> Option<Selection> {
        let current = from.unwrap_or(Selection {
            layer: 0,
            part: Part::Weight,
        });
        let mut index = current.layer as i64;
        loop {
            index += i64::from(delta.signum());
            let row = usize::try_from(index).ok().and_then(|i| layers.get(i))?;
            if !row.quantizable {
                continue;
            }
            let part = match current.part {
                Part::Weight if row.weight.is_some() => Part::Weight,
                Part::Recurrence if row.recurrence.is_some() => Part::Recurrence,
                Part::Input if row.input.is_some() => Part::Input,
                Part::Output if row.output.is_some() => Part::Output,
                _ if row.weight.is_some() => Part::Weight,
                _ => Part::Output,
            };
            return Some(Selection {
                layer: index as usize,
                part,
            });
        }
    }
}
