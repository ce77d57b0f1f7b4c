//! The world: receptacles at locations, objects in them, the agent, and ALFWorld's text
//! interface over them.
//!
//! A world is split in two: the `Layout` (what never changes: names, kinds, locations,
//! properties, what can go where) and the `State` (where the agent is, what it holds, where
//! each object is, which receptacles are open, which objects are clean, hot, cool or switched
//! on). Actions are parsed into `Action`s, checked and applied to a `State` without any text
//! (the planner uses that), and only then rendered.
//!
//! # Observation formats
//!
//! Derived from the ReAct/Reflexion ALFWorld prompts (`alfworld_3prompts.json`,
//! `reflexion_few_shot_examples.txt`) and checked against ALFWorld's grammar (`alfred.twl2`):
//!
//! * Lists of things (`you see ...`): `nothing` when empty; `a X 1` for one item; for two or
//!   more, every item but the last followed by `, ` and the last preceded by `, and `:
//!   `a X 1, and a Y 2`, `a X 1, a Y 2, and a Z 3` (twl2's `list_separator` / `list_last_separator`).
//!   The article is always `a` (`a apple 1`, `a egg 2`). Items are ordered by kind
//!   alphabetically, then by number from highest to lowest (`a cabinet 10, a cabinet 9, ...`,
//!   `a bread 4, a bread 3`). This rule holds for every kind of observation: of the 168 lists of
//!   two or more items in the prompt file (ReAct and Act prompts), 166 follow it; the two
//!   exceptions are one line, `On the cabinet 1, you see a cloth 1, a soapbar 1, a soapbottle 1.`,
//!   in `react_put_0` and its `act_put_0` copy: a hand edit, since 100 other `On the ...` lines
//!   with two or more items have `, and`.
//! * Arriving at (`go to R`) or examining a receptacle: `On the R, you see LIST.` when it cannot
//!   be opened, `The R is closed.` when closed, `The R is open. In it, you see LIST.` when open.
//! * `open R`: `You open the R. The R is open. In it, you see LIST.`; `close R`: `You close the R.`
//! * `take O from R`: `You pick up the O from the R.`; `put O in/on R` (also `put O in R`,
//!   `put O on R`): `You put the O in/on the R.`
//! * `clean/heat/cool O with R`: `You clean the O using the R.` (heat, cool alike).
//! * `use L`: `You turn on the L.` (ALFWorld marks a lamp toggled for good, so every use says so).
//! * `inventory`: `You are carrying: a O.` or `You are not carrying anything.`
//! * `look`: in the middle of the room `You are in the middle of a room. Looking quickly around
//!   you, you see nothing.` (as in the Reflexion trace); at a location `You are facing the R 2,
//!   and R 1. Next to it, you see nothing.` (the receptacles there, without articles).
//! * `examine O` (held, or in a reachable open receptacle): twl2's texts, e.g. `This is a hot
//!   apple 1.`, `This is a cold mug 1.`, `This is a clean ...`, `This desklamp 1 is on.`,
//!   `There's nothing special about cd 1.`; objects that hold things (bowl, cup, mug, pan,
//!   plate, pot, box): `This is a normal mug 1. In it, you see nothing.`
//! * `think: ...`: `OK.`; anything invalid or unknown: `Nothing happens.`
//! * The first observation: `You are in the middle of a room. Looking quickly around you, you
//!   see LIST.` over every receptacle, a newline, `Your task is to: TASK.`
//!
//! # Rules (ALFWorld's PDDL domain `alfred.pddl`)
//!
//! `go to R` moves to R's location; going to a receptacle at the current location does nothing
//! (`react_puttwo_2`: cabinet 2 shares cabinet 1's place). Open, close, take, put, clean, heat,
//! cool, use and examining a receptacle need the agent at the receptacle's location; take and
//! put need an openable receptacle to be open; take needs empty hands (one object at most);
//! put needs the receptacle to accept the object kind. Clean needs a sink basin, heat a
//! microwave, cool a fridge (each may be closed), and the object held and able to be so
//! treated. Heating clears cool and cooling clears hot.
//!
//! long: the world's rules and ALFWorld's exact observation strings live in one place, so that each action's effect and its wording are read together.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::catalog::{self, object_kind};
use super::task::{is_word, Task, TaskType};

/// The observation for an action that is invalid in the current state or not understood.
pub const NOTHING_HAPPENS: &str = "Nothing happens.";
/// The observation for a `think: ...` action.
pub const THINK_OK: &str = "OK.";
/// The most receptacles a world can have.
pub const MAX_RECEPTACLES: usize = 128;
/// The most objects a world can have.
pub const MAX_OBJECTS: usize = 60_000;

/// One receptacle of a [`WorldSpec`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceptacleSpec {
    /// Its name, a kind and a number: `cabinet 1`.
    pub name: String,
    /// Whether it can be opened (cabinets, drawers, fridges, microwaves, safes...).
    #[serde(default, skip_serializing_if = "is_false")]
    pub openable: bool,
    /// Whether it starts open (only for openable ones).
    #[serde(default, skip_serializing_if = "is_false")]
    pub open: bool,
    /// The objects in or on it at the start, by name (`apple 1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<String>,
    /// Another receptacle, listed earlier, whose location this one shares (going from one to
    /// the other does nothing, as with ALFWorld's neighbouring cabinets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A world described as data: the receptacles (with their contents) and the goal text. The
/// agent starts in the middle of the room holding nothing; objects start neither clean, hot,
/// cool nor switched on. Object properties and where each kind can be put come from the
/// built-in catalog (kinds it does not know have no property and go anywhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorldSpec {
    /// The receptacles, in any order.
    pub receptacles: Vec<ReceptacleSpec>,
    /// The goal text in one of ALFWorld's templates (`put some spraybottle on toilet`).
    pub task: String,
}

/// Why a [`WorldSpec`] cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// A name is not a lowercase word, a space and a number from 1.
    #[error("`{0}` is not a name like `apple 1` (a lowercase word, a space, a number from 1)")]
    BadName(String),
    /// Two things have the same name.
    #[error("`{0}` is named twice")]
    Duplicate(String),
    /// Too many receptacles.
    #[error("{0} receptacles; at most {MAX_RECEPTACLES}")]
    TooManyReceptacles(usize),
    /// Too many objects.
    #[error("{0} objects; at most {MAX_OBJECTS}")]
    TooManyObjects(usize),
    /// No receptacle at all.
    #[error("a world needs at least one receptacle")]
    NoReceptacles,
    /// `with` names no earlier receptacle.
    #[error("`{name}` is with `{with}`, which is not a receptacle listed before it")]
    UnknownWith {
        /// The receptacle.
        name: String,
        /// What its `with` names.
        with: String,
    },
    /// A receptacle starts open but cannot be opened.
    #[error("`{0}` starts open but is not openable")]
    OpenNotOpenable(String),
    /// The goal text matches no template.
    #[error("`{0}` is not a task in any of ALFWorld's templates")]
    BadTask(String),
}

/// Object state bits.
pub(crate) const CLEAN: u8 = 1;
pub(crate) const HOT: u8 = 2;
pub(crate) const COOL: u8 = 4;
/// ALFWorld's `isToggled`: set by `use`, never cleared.
pub(crate) const ON: u8 = 8;

/// `State::agent` before the first `go to`.
pub(crate) const NOWHERE: u16 = u16::MAX;
/// `State::held` when the hands are empty.
pub(crate) const NONE: u16 = u16::MAX;
/// `State::place` of the held object.
pub(crate) const HELD: u16 = u16::MAX;

/// What a receptacle can do to a held object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Appliance {
    Plain,
    Sink,
    Microwave,
    Fridge,
}

#[derive(Debug, Clone)]
pub(crate) struct Recep {
    pub name: String,
    pub ty: u16,
    pub num: u32,
    pub openable: bool,
    pub loc: u16,
    pub appliance: Appliance,
}

#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub name: String,
    pub ty: u16,
    pub num: u32,
    pub props: u8,
    /// Bit r: the object can be put in receptacle r.
    pub can_go: u128,
}

/// What never changes in a world. Receptacles and objects are sorted in display order (kind
/// alphabetically, then number from highest), so listing a receptacle's contents is one pass.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub types: Vec<String>,
    pub receps: Vec<Recep>,
    pub objs: Vec<Obj>,
    /// Per type id, the receptacles of that kind: `[start, end)`.
    recep_range: Vec<(u16, u16)>,
    /// Per type id, the objects of that kind: `[start, end)`.
    obj_range: Vec<(u16, u16)>,
}

/// What changes in a world.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct State {
    /// The agent's location, or [`NOWHERE`].
    pub agent: u16,
    /// The held object, or [`NONE`].
    pub held: u16,
    /// Per object, its receptacle or [`HELD`].
    pub place: Vec<u16>,
    /// Per object, [`CLEAN`] | [`HOT`] | [`COOL`] | [`ON`].
    pub flags: Vec<u8>,
    /// Bit r: receptacle r is open.
    pub open: u128,
}

/// A parsed action over receptacle and object indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Look,
    Inventory,
    Think,
    GoTo(u16),
    Open(u16),
    Close(u16),
    Take(u16, u16),
    Put(u16, u16),
    Clean(u16, u16),
    Heat(u16, u16),
    Cool(u16, u16),
    Use(u16),
    ExamineRecep(u16),
    ExamineObj(u16),
}

/// A goal over type ids (`None`: the kind does not exist in this world, so never reached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Goal {
    /// `count` distinct objects of kind `obj` with all `need` bits, in one receptacle of kind
    /// `recep` (count 1: in any).
    Place {
        obj: Option<u16>,
        recep: Option<u16>,
        need: u8,
        count: u8,
    },
    /// An object of kind `obj` held, and a switched-on lamp of kind `lamp` at the agent's
    /// location.
    Light { obj: Option<u16>, lamp: Option<u16> },
}

/// Splits `kind N` into the kind and the number (a number from 1, no leading zero).
pub(crate) fn split_name(name: &str) -> Option<(&str, u32)> {
    let (kind, num) = name.split_once(' ')?;
    Some((kind, parse_num(num)?)).filter(|_| is_word(kind))
}

fn parse_num(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 9 || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

/// Appends `a X, a Y, and a Z` (with `article`) or `nothing`.
fn write_list<'a>(out: &mut String, article: bool, items: impl Iterator<Item = &'a str> + Clone) {
    let n = items.clone().count();
    if n == 0 {
        out.push_str("nothing");
        return;
    }
    for (i, name) in items.enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == n { ", and " } else { ", " });
        }
        if article {
            out.push_str("a ");
        }
        out.push_str(name);
    }
}

impl Layout {
    /// Builds a world from its description: the layout, the initial state and the task.
    // long: a world description becomes a layout, a state and a task in one pass that checks each receptacle and object as it places it; the checks name what they read.
    pub(crate) fn build(spec: &WorldSpec) -> Result<(Layout, State, Task), WorldError> {
        let task = Task::parse(&spec.task).ok_or_else(|| WorldError::BadTask(spec.task.clone()))?;
        if spec.receptacles.is_empty() {
            return Err(WorldError::NoReceptacles);
        }
        if spec.receptacles.len() > MAX_RECEPTACLES {
            return Err(WorldError::TooManyReceptacles(spec.receptacles.len()));
        }
        let n_objs: usize = spec.receptacles.iter().map(|r| r.contents.len()).sum();
        if n_objs > MAX_OBJECTS {
            return Err(WorldError::TooManyObjects(n_objs));
        }
        let mut seen = HashSet::new();
        let mut check = |name: &str| -> Result<(String, u32), WorldError> {
            let (kind, num) =
                split_name(name).ok_or_else(|| WorldError::BadName(name.to_string()))?;
            if !seen.insert(name.to_string()) {
                return Err(WorldError::Duplicate(name.to_string()));
            }
            Ok((kind.to_string(), num))
        };
        // (kind, number, spec index) of receptacles; (kind, number, spec receptacle) of objects.
        let mut rs = Vec::with_capacity(spec.receptacles.len());
        let mut os = Vec::with_capacity(n_objs);
        for (i, r) in spec.receptacles.iter().enumerate() {
            let (k, n) = check(&r.name)?;
            if r.open && !r.openable {
                return Err(WorldError::OpenNotOpenable(r.name.clone()));
            }
            rs.push((k, n, i));
        }
        for (i, r) in spec.receptacles.iter().enumerate() {
            for o in &r.contents {
                let (k, n) = check(o)?;
                os.push((k, n, i));
            }
        }
        let mut types: Vec<String> = rs
            .iter()
            .chain(os.iter())
            .map(|(k, _, _)| k.clone())
            .collect();
        types.sort();
        types.dedup();
        let ty = |k: &str| types.binary_search_by(|t| t.as_str().cmp(k)).unwrap_or(0) as u16;
        let order =
            |a: &(String, u32, usize), b: &(String, u32, usize)| a.0.cmp(&b.0).then(b.1.cmp(&a.1));
        rs.sort_by(order);
        os.sort_by(order);
        // Spec index -> sorted index.
        let mut index_of = vec![0u16; spec.receptacles.len()];
        for (new, (_, _, old)) in rs.iter().enumerate() {
            index_of[*old] = new as u16;
        }
        // Locations, in spec order so that `with` can only name an earlier receptacle.
        let mut loc_of_spec = vec![0u16; spec.receptacles.len()];
        let mut n_locs = 0u16;
        for (i, r) in spec.receptacles.iter().enumerate() {
            loc_of_spec[i] = match &r.with {
                None => {
                    n_locs += 1;
                    n_locs - 1
                }
                Some(w) => {
                    let j = spec.receptacles[..i]
                        .iter()
                        .position(|o| &o.name == w)
                        .ok_or_else(|| WorldError::UnknownWith {
                            name: r.name.clone(),
                            with: w.clone(),
                        })?;
                    loc_of_spec[j]
                }
            };
        }
        let receps: Vec<Recep> = rs
            .iter()
            .map(|(k, n, i)| Recep {
                name: format!("{k} {n}"),
                ty: ty(k),
                num: *n,
                openable: spec.receptacles[*i].openable,
                loc: loc_of_spec[*i],
                appliance: match k.as_str() {
                    "sinkbasin" => Appliance::Sink,
                    "microwave" => Appliance::Microwave,
                    "fridge" => Appliance::Fridge,
                    _ => Appliance::Plain,
                },
            })
            .collect();
        let objs: Vec<Obj> = os
            .iter()
            .map(|(k, n, home)| {
                let entry = object_kind(k);
                let home_kind = &rs[index_of[*home] as usize].0;
                let mut can_go = 0u128;
                for (r, (rk, _, _)) in rs.iter().enumerate() {
                    let ok = match entry {
                        None => true,
                        Some(e) => {
                            e.places.contains(&rk.as_str())
                                || catalog::SURFACES.contains(&rk.as_str())
                                || rk == home_kind
                        }
                    };
                    if ok {
                        can_go |= 1 << r;
                    }
                }
                Obj {
                    name: format!("{k} {n}"),
                    ty: ty(k),
                    num: *n,
                    props: entry.map_or(0, |e| e.props),
                    can_go,
                }
            })
            .collect();
        let ranges = |tys: &mut dyn Iterator<Item = u16>| {
            let mut v = vec![(0u16, 0u16); types.len()];
            for (i, t) in tys.enumerate() {
                let e = &mut v[t as usize];
                if e.0 == e.1 {
                    *e = (i as u16, i as u16 + 1);
                } else {
                    e.1 = i as u16 + 1;
                }
            }
            v
        };
        let recep_range = ranges(&mut receps.iter().map(|r| r.ty));
        let obj_range = ranges(&mut objs.iter().map(|o| o.ty));
        let mut open = 0u128;
        for (new, (_, _, old)) in rs.iter().enumerate() {
            if spec.receptacles[*old].open {
                open |= 1 << new;
            }
        }
        let state = State {
            agent: NOWHERE,
            held: NONE,
            place: os.iter().map(|(_, _, home)| index_of[*home]).collect(),
            flags: vec![0; os.len()],
            open,
        };
        let layout = Layout {
            types,
            receps,
            objs,
            recep_range,
            obj_range,
        };
        Ok((layout, state, task))
    }

    fn type_id(&self, word: &str) -> Option<u16> {
        self.types
            .iter()
            .position(|t| t.eq_ignore_ascii_case(word))
            .map(|i| i as u16)
    }

    /// The type id of a kind, if this world has it.
    pub(crate) fn kind(&self, word: &str) -> Option<u16> {
        self.types
            .binary_search_by(|t| t.as_str().cmp(word))
            .ok()
            .map(|i| i as u16)
    }

    /// The objects of a kind.
    pub(crate) fn objs_of(&self, ty: Option<u16>) -> std::ops::Range<usize> {
        match ty {
            Some(t) => {
                let (a, b) = self.obj_range[t as usize];
                a as usize..b as usize
            }
            None => 0..0,
        }
    }

    /// The receptacles of a kind.
    pub(crate) fn receps_of(&self, ty: Option<u16>) -> std::ops::Range<usize> {
        match ty {
            Some(t) => {
                let (a, b) = self.recep_range[t as usize];
                a as usize..b as usize
            }
            None => 0..0,
        }
    }

    fn find(&self, kind: &str, num: &str) -> Option<Entity> {
        let ty = self.type_id(kind)?;
        let want = parse_num(num)?;
        let (a, b) = self.recep_range[ty as usize];
        if let Some(r) = (a..b).find(|&r| self.receps[r as usize].num == want) {
            return Some(Entity::Recep(r));
        }
        let (a, b) = self.obj_range[ty as usize];
        (a..b)
            .find(|&o| self.objs[o as usize].num == want)
            .map(Entity::Obj)
    }

    fn recep(&self, kind: &str, num: &str) -> Option<u16> {
        match self.find(kind, num)? {
            Entity::Recep(r) => Some(r),
            Entity::Obj(_) => None,
        }
    }

    fn obj(&self, kind: &str, num: &str) -> Option<u16> {
        match self.find(kind, num)? {
            Entity::Obj(o) => Some(o),
            Entity::Recep(_) => None,
        }
    }

    /// Reads an action in ALFWorld's wording (ASCII case and runs of white space do not
    /// matter). `None`: not an action, or it names something this world lacks.
    pub(crate) fn parse(&self, text: &str) -> Option<Action> {
        let t = text.trim();
        if t.len() >= 6 && t.as_bytes()[..6].eq_ignore_ascii_case(b"think:") {
            return Some(Action::Think);
        }
        let mut w = [""; 7];
        let mut n = 0;
        for word in t.split_ascii_whitespace() {
            if n == w.len() {
                return None;
            }
            w[n] = word;
            n += 1;
        }
        let is = |i: usize, s: &str| w[i].eq_ignore_ascii_case(s);
        match n {
            1 if is(0, "look") => Some(Action::Look),
            1 if is(0, "inventory") => Some(Action::Inventory),
            3 if is(0, "open") => self.recep(w[1], w[2]).map(Action::Open),
            3 if is(0, "close") => self.recep(w[1], w[2]).map(Action::Close),
            3 if is(0, "use") => self.obj(w[1], w[2]).map(Action::Use),
            3 if is(0, "examine") => match self.find(w[1], w[2])? {
                Entity::Recep(r) => Some(Action::ExamineRecep(r)),
                Entity::Obj(o) => Some(Action::ExamineObj(o)),
            },
            4 if is(0, "go") && is(1, "to") => self.recep(w[2], w[3]).map(Action::GoTo),
            6 => {
                let o = self.obj(w[1], w[2])?;
                let r = self.recep(w[4], w[5])?;
                if is(0, "take") && is(3, "from") {
                    Some(Action::Take(o, r))
                } else if is(0, "put") && (is(3, "in/on") || is(3, "in") || is(3, "on")) {
                    Some(Action::Put(o, r))
                } else if is(3, "with") {
                    if is(0, "clean") {
                        Some(Action::Clean(o, r))
                    } else if is(0, "heat") {
                        Some(Action::Heat(o, r))
                    } else if is(0, "cool") {
                        Some(Action::Cool(o, r))
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    fn at(&self, s: &State, r: u16) -> bool {
        self.receps[r as usize].loc == s.agent
    }

    fn reachable(&self, s: &State, r: u16) -> bool {
        !self.receps[r as usize].openable || s.open & (1 << r) != 0
    }

    /// Whether `o` lies in a receptacle at the agent's location that is open or not openable.
    fn visible(&self, s: &State, o: u16) -> bool {
        let r = s.place[o as usize];
        r != HELD && self.at(s, r) && self.reachable(s, r)
    }

    /// Applies `a` if it is valid in `s`; returns whether it was (an invalid action changes
    /// nothing).
    pub(crate) fn apply(&self, s: &mut State, a: Action) -> bool {
        let recep = |r: u16| &self.receps[r as usize];
        let props = |o: u16| self.objs[o as usize].props;
        match a {
            Action::Look | Action::Inventory | Action::Think => true,
            Action::GoTo(r) => {
                if self.at(s, r) {
                    return false;
                }
                s.agent = recep(r).loc;
                true
            }
            Action::Open(r) | Action::Close(r) => {
                let is_open = s.open & (1 << r) != 0;
                if !self.at(s, r) || !recep(r).openable || is_open == matches!(a, Action::Open(_)) {
                    return false;
                }
                s.open ^= 1 << r;
                true
            }
            Action::Take(o, r) => {
                if s.held != NONE
                    || s.place[o as usize] != r
                    || !self.at(s, r)
                    || !self.reachable(s, r)
                    || props(o) & catalog::FIXED != 0
                {
                    return false;
                }
                s.place[o as usize] = HELD;
                s.held = o;
                true
            }
            Action::Put(o, r) => {
                if s.held != o
                    || !self.at(s, r)
                    || !self.reachable(s, r)
                    || self.objs[o as usize].can_go & (1 << r) == 0
                {
                    return false;
                }
                s.place[o as usize] = r;
                s.held = NONE;
                true
            }
            Action::Clean(o, r) | Action::Heat(o, r) | Action::Cool(o, r) => {
                let (appliance, prop, set, clear) = match a {
                    Action::Clean(..) => (Appliance::Sink, catalog::CLEANABLE, CLEAN, 0),
                    Action::Heat(..) => (Appliance::Microwave, catalog::HEATABLE, HOT, COOL),
                    _ => (Appliance::Fridge, catalog::COOLABLE, COOL, HOT),
                };
                if s.held != o
                    || recep(r).appliance != appliance
                    || !self.at(s, r)
                    || props(o) & prop == 0
                {
                    return false;
                }
                let f = &mut s.flags[o as usize];
                *f = (*f | set) & !clear;
                true
            }
            Action::Use(o) => {
                let r = s.place[o as usize];
                if props(o) & catalog::TOGGLEABLE == 0 || r == HELD || !self.at(s, r) {
                    return false;
                }
                s.flags[o as usize] |= ON;
                true
            }
            Action::ExamineRecep(r) => self.at(s, r),
            Action::ExamineObj(o) => s.held == o || self.visible(s, o),
        }
    }

    /// Appends what a receptacle shows: closed, open with contents, or its surface.
    fn describe(&self, s: &State, r: u16, out: &mut String) {
        let name = &self.receps[r as usize].name;
        if self.receps[r as usize].openable {
            out.push_str("The ");
            out.push_str(name);
            if s.open & (1 << r) == 0 {
                out.push_str(" is closed.");
                return;
            }
            out.push_str(" is open. In it, you see ");
        } else {
            out.push_str("On the ");
            out.push_str(name);
            out.push_str(", you see ");
        }
        let contents = self
            .objs
            .iter()
            .zip(&s.place)
            .filter(move |(_, &p)| p == r)
            .map(|(o, _)| o.name.as_str());
        write_list(out, true, contents);
        out.push('.');
    }

    /// The first line of the first observation (ALFWorld's `list_appliances`).
    pub(crate) fn intro(&self, task: &Task) -> String {
        let mut out =
            String::from("You are in the middle of a room. Looking quickly around you, you see ");
        write_list(&mut out, true, self.receps.iter().map(|r| r.name.as_str()));
        out.push_str(".\nYour task is to: ");
        out.push_str(&task.text);
        out.push('.');
        out
    }

    /// Appends the observation of an action just applied (valid) to `s`.
    pub(crate) fn render(&self, s: &State, a: Action, out: &mut String) {
        let r_name = |r: u16| self.receps[r as usize].name.as_str();
        let o_name = |o: u16| self.objs[o as usize].name.as_str();
        let mut sentence = |parts: &[&str]| {
            for p in parts {
                out.push_str(p);
            }
        };
        match a {
            Action::Think => sentence(&[THINK_OK]),
            Action::Look => {
                if s.agent == NOWHERE {
                    sentence(&["You are in the middle of a room. Looking quickly around you, you see nothing."]);
                } else {
                    out.push_str("You are facing the ");
                    let here = self
                        .receps
                        .iter()
                        .filter(|r| r.loc == s.agent)
                        .map(|r| r.name.as_str());
                    write_list(out, false, here);
                    out.push_str(". Next to it, you see nothing.");
                }
            }
            Action::Inventory => {
                if s.held == NONE {
                    sentence(&["You are not carrying anything."]);
                } else {
                    sentence(&["You are carrying: a ", o_name(s.held), "."]);
                }
            }
            Action::GoTo(r) | Action::ExamineRecep(r) => self.describe(s, r, out),
            Action::Open(r) => {
                sentence(&["You open the ", r_name(r), ". "]);
                self.describe(s, r, out);
            }
            Action::Close(r) => sentence(&["You close the ", r_name(r), "."]),
            Action::Take(o, r) => {
                sentence(&["You pick up the ", o_name(o), " from the ", r_name(r), "."])
            }
            Action::Put(o, r) => {
                sentence(&["You put the ", o_name(o), " in/on the ", r_name(r), "."])
            }
            Action::Clean(o, r) => {
                sentence(&["You clean the ", o_name(o), " using the ", r_name(r), "."])
            }
            Action::Heat(o, r) => {
                sentence(&["You heat the ", o_name(o), " using the ", r_name(r), "."])
            }
            Action::Cool(o, r) => {
                sentence(&["You cool the ", o_name(o), " using the ", r_name(r), "."])
            }
            Action::Use(o) => sentence(&["You turn on the ", o_name(o), "."]),
            Action::ExamineObj(o) => self.examine_object(s, o, out),
        }
    }

    /// twl2's `examineObject.feedback`, first matching rule (no slicing here).
    fn examine_object(&self, s: &State, o: u16, out: &mut String) {
        let obj = &self.objs[o as usize];
        let f = s.flags[o as usize];
        let (clean, hot, cool) = (f & CLEAN != 0, f & HOT != 0, f & COOL != 0);
        let name = obj.name.as_str();
        let parts: [&str; 3] = if obj.props & catalog::RECEPTACLE_OBJECT != 0 {
            ["This is a normal ", name, ". In it, you see nothing."]
        } else if clean && hot {
            ["This is a hot and clean ", name, "."]
        } else if clean && cool {
            ["This is a cool and clean ", name, "."]
        } else if hot {
            ["This is a hot ", name, "."]
        } else if clean {
            ["This is a clean ", name, "."]
        } else if cool {
            ["This is a cold ", name, "."]
        } else if obj.props & catalog::TOGGLEABLE != 0 {
            [
                "This ",
                name,
                if f & ON != 0 { " is on." } else { " is off." },
            ]
        } else {
            ["There's nothing special about ", name, "."]
        };
        for p in parts {
            out.push_str(p);
        }
    }

    /// The action's text in ALFWorld's wording (`put` as `put O in/on R`).
    pub(crate) fn action_text(&self, a: Action) -> String {
        let r = |r: u16| self.receps[r as usize].name.as_str();
        let o = |o: u16| self.objs[o as usize].name.as_str();
        match a {
            Action::Look => "look".into(),
            Action::Inventory => "inventory".into(),
            Action::Think => "think:".into(),
            Action::GoTo(x) => format!("go to {}", r(x)),
            Action::Open(x) => format!("open {}", r(x)),
            Action::Close(x) => format!("close {}", r(x)),
            Action::Take(x, y) => format!("take {} from {}", o(x), r(y)),
            Action::Put(x, y) => format!("put {} in/on {}", o(x), r(y)),
            Action::Clean(x, y) => format!("clean {} with {}", o(x), r(y)),
            Action::Heat(x, y) => format!("heat {} with {}", o(x), r(y)),
            Action::Cool(x, y) => format!("cool {} with {}", o(x), r(y)),
            Action::Use(x) => format!("use {}", o(x)),
            Action::ExamineRecep(x) => format!("examine {}", r(x)),
            Action::ExamineObj(x) => format!("examine {}", o(x)),
        }
    }

    /// Every valid action in `s` except `think:` (sorted, no duplicates).
    pub(crate) fn admissible(&self, s: &State) -> Vec<String> {
        let mut acts = vec![Action::Look, Action::Inventory];
        for r in 0..self.receps.len() as u16 {
            acts.push(Action::GoTo(r));
            acts.extend([Action::Open(r), Action::Close(r), Action::ExamineRecep(r)]);
            if s.held != NONE {
                acts.extend([
                    Action::Put(s.held, r),
                    Action::Clean(s.held, r),
                    Action::Heat(s.held, r),
                    Action::Cool(s.held, r),
                ]);
            }
        }
        for o in 0..self.objs.len() as u16 {
            let p = s.place[o as usize];
            if p != HELD {
                acts.push(Action::Take(o, p));
            }
            acts.extend([Action::Use(o), Action::ExamineObj(o)]);
        }
        let mut scratch = s.clone();
        let mut out: Vec<String> = acts
            .into_iter()
            .filter(|&a| {
                scratch.clone_from(s);
                self.apply(&mut scratch, a)
            })
            .map(|a| self.action_text(a))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether the goal holds in `s`.
    pub(crate) fn satisfied(&self, s: &State, g: &Goal) -> bool {
        match *g {
            Goal::Place {
                obj,
                recep,
                need,
                count,
            } => {
                let Some(recep) = recep else { return false };
                let qualifies = |o: usize| {
                    let r = s.place[o];
                    (r != HELD && self.receps[r as usize].ty == recep && s.flags[o] & need == need)
                        .then_some(r)
                };
                let range = self.objs_of(obj);
                if count <= 1 {
                    return range.clone().any(|o| qualifies(o).is_some());
                }
                // Two distinct objects in the same receptacle.
                range.clone().any(|o| {
                    qualifies(o)
                        .is_some_and(|r| range.clone().any(|o2| o2 > o && qualifies(o2) == Some(r)))
                })
            }
            Goal::Light { obj, lamp } => {
                if s.held == NONE || Some(self.objs[s.held as usize].ty) != obj {
                    return false;
                }
                self.objs_of(lamp).any(|l| {
                    let r = s.place[l];
                    s.flags[l] & ON != 0 && r != HELD && self.receps[r as usize].loc == s.agent
                })
            }
        }
    }

    /// The goal of a task in this world.
    pub(crate) fn goal(&self, task: &Task) -> Goal {
        let obj = self.kind(&task.object);
        let target = self.kind(&task.target);
        let (need, count) = match task.task_type {
            TaskType::Examine => return Goal::Light { obj, lamp: target },
            TaskType::Put => (0, 1),
            TaskType::Clean => (CLEAN, 1),
            TaskType::Heat => (HOT, 1),
            TaskType::Cool => (COOL, 1),
            TaskType::PutTwo => (0, 2),
        };
        Goal::Place {
            obj,
            recep: target,
            need,
            count,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Entity {
    Recep(u16),
    Obj(u16),
}

#[cfg(test)]
mod tests;
