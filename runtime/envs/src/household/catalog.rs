//! What the household knows about kinds of things: which objects can be cleaned, heated, cooled
//! or switched on, where each kind of object plausibly lies (and so where it can be put), and
//! which receptacles each room has.
//!
//! The property lists follow ALFRED/ALFWorld (`cleanable`: what fits in a sink basin,
//! `heatable`: what goes in a microwave, `coolable`: what goes in a fridge, lamps are
//! `toggleable`); object kinds that are not listed here (a world description may name any word)
//! have no property, can be picked up and can be put anywhere.

/// The object can be cleaned with a sink basin.
pub(crate) const CLEANABLE: u8 = 1;
/// The object can be heated with a microwave.
pub(crate) const HEATABLE: u8 = 2;
/// The object can be cooled with a fridge.
pub(crate) const COOLABLE: u8 = 4;
/// The object can be switched on (`use`): a lamp.
pub(crate) const TOGGLEABLE: u8 = 8;
/// The object holds things (ALFWorld's `isReceptacleObject`: its `examine` text differs).
pub(crate) const RECEPTACLE_OBJECT: u8 = 16;
/// The object cannot be picked up.
pub(crate) const FIXED: u8 = 32;

/// Room bits.
pub(crate) const KITCHEN: u8 = 1;
pub(crate) const BATHROOM: u8 = 2;
pub(crate) const BEDROOM: u8 = 4;
pub(crate) const LIVINGROOM: u8 = 8;

/// One kind of object.
pub(crate) struct ObjectKind {
    /// The word ALFWorld uses (`apple`, `soapbar`, `desklamp`).
    pub name: &'static str,
    /// Property bits.
    pub props: u8,
    /// The rooms it appears in.
    pub rooms: u8,
    /// Receptacle kinds it lies in or on when a world is generated; it can also be put there.
    pub places: &'static [&'static str],
}

const C: u8 = CLEANABLE;
const H: u8 = HEATABLE;
const K: u8 = COOLABLE;
const R: u8 = RECEPTACLE_OBJECT;

/// Receptacle kinds that take any small object (besides each object's own places).
pub(crate) const SURFACES: &[&str] = &[
    "cabinet",
    "coffeetable",
    "countertop",
    "desk",
    "diningtable",
    "drawer",
    "dresser",
    "garbagecan",
    "shelf",
    "sidetable",
];

/// Every object kind, sorted by name: (name, properties, rooms, places).
#[rustfmt::skip]
pub(crate) const OBJECTS: &[ObjectKind] = &[
    obj("alarmclock", 0, BEDROOM, &["desk", "dresser", "shelf", "sidetable", "drawer"]),
    obj("apple", C | H | K, KITCHEN, &["fridge", "countertop", "diningtable", "sidetable", "garbagecan", "sinkbasin", "microwave"]),
    obj("book", 0, BEDROOM | LIVINGROOM, &["bed", "desk", "drawer", "dresser", "shelf", "sidetable", "armchair", "coffeetable", "sofa"]),
    obj("bowl", C | K | R, KITCHEN | BEDROOM, &["cabinet", "countertop", "diningtable", "fridge", "shelf", "sinkbasin", "microwave", "sidetable", "desk", "dresser"]),
    obj("box", R, LIVINGROOM, &["coffeetable", "diningtable", "sofa", "armchair", "dresser", "sidetable", "shelf", "cabinet"]),
    obj("bread", H | K, KITCHEN, &["countertop", "diningtable", "fridge", "sidetable", "cabinet", "microwave"]),
    obj("butterknife", C, KITCHEN, &["countertop", "diningtable", "drawer", "sinkbasin", "sidetable"]),
    obj("candle", 0, BATHROOM, &["cabinet", "countertop", "toilet", "shelf", "drawer", "bathtubbasin", "dresser"]),
    obj("cd", 0, BEDROOM, &["desk", "drawer", "dresser", "shelf", "sidetable", "safe", "garbagecan"]),
    obj("cellphone", 0, BEDROOM | LIVINGROOM, &["bed", "desk", "drawer", "dresser", "shelf", "sidetable", "safe", "armchair", "sofa", "coffeetable", "diningtable"]),
    obj("cloth", C, BATHROOM | BEDROOM, &["cabinet", "countertop", "bathtubbasin", "sinkbasin", "toilet", "drawer", "shelf", "garbagecan", "dresser", "laundryhamper"]),
    obj("creditcard", 0, BEDROOM | LIVINGROOM, &["desk", "drawer", "dresser", "shelf", "sidetable", "armchair", "bed", "sofa", "coffeetable", "diningtable"]),
    obj("cup", C | H | K | R, KITCHEN, &["cabinet", "countertop", "diningtable", "fridge", "shelf", "sinkbasin", "microwave", "sidetable", "coffeemachine"]),
    obj("desklamp", TOGGLEABLE | FIXED, BEDROOM | LIVINGROOM, &["desk", "sidetable", "dresser"]),
    obj("dishsponge", C, KITCHEN | BATHROOM, &["countertop", "sinkbasin", "drawer", "cabinet", "shelf", "garbagecan", "toilet", "bathtubbasin"]),
    obj("egg", C | H | K, KITCHEN, &["fridge", "countertop", "diningtable", "sinkbasin", "garbagecan", "microwave", "sidetable"]),
    obj("floorlamp", TOGGLEABLE | FIXED, LIVINGROOM, &["sidetable", "dresser"]),
    obj("fork", C, KITCHEN, &["drawer", "countertop", "diningtable", "sinkbasin", "sidetable"]),
    obj("glassbottle", 0, KITCHEN, &["countertop", "diningtable", "cabinet", "shelf", "garbagecan", "fridge"]),
    obj("handtowel", 0, BATHROOM, &["handtowelholder", "countertop", "cabinet"]),
    obj("houseplant", FIXED, KITCHEN | LIVINGROOM, &["countertop", "diningtable", "coffeetable", "sidetable", "shelf"]),
    obj("kettle", C, KITCHEN, &["stoveburner", "countertop", "cabinet", "diningtable", "shelf", "sinkbasin"]),
    obj("keychain", 0, BEDROOM | LIVINGROOM, &["desk", "drawer", "dresser", "shelf", "sidetable", "safe", "armchair", "sofa", "coffeetable", "diningtable"]),
    obj("knife", C, KITCHEN, &["countertop", "diningtable", "drawer", "sinkbasin", "sidetable"]),
    obj("ladle", C, KITCHEN, &["drawer", "countertop", "diningtable", "sinkbasin", "sidetable"]),
    obj("laptop", 0, BEDROOM | LIVINGROOM, &["bed", "desk", "dresser", "sidetable", "armchair", "sofa", "coffeetable", "diningtable"]),
    obj("lettuce", C | K, KITCHEN, &["fridge", "countertop", "diningtable", "sinkbasin", "sidetable", "garbagecan"]),
    obj("mug", C | H | K | R, KITCHEN | BEDROOM, &["cabinet", "coffeemachine", "countertop", "diningtable", "fridge", "shelf", "sinkbasin", "microwave", "sidetable", "desk"]),
    obj("newspaper", 0, LIVINGROOM, &["coffeetable", "diningtable", "sofa", "armchair", "sidetable", "dresser", "garbagecan"]),
    obj("pan", C | K | R, KITCHEN, &["stoveburner", "countertop", "cabinet", "diningtable", "fridge", "sinkbasin"]),
    obj("papertowelroll", 0, KITCHEN, &["countertop", "diningtable", "cabinet", "shelf", "sidetable"]),
    obj("pen", 0, BEDROOM, &["desk", "drawer", "dresser", "shelf", "sidetable", "garbagecan"]),
    obj("pencil", 0, BEDROOM, &["desk", "drawer", "dresser", "shelf", "sidetable", "garbagecan"]),
    obj("peppershaker", 0, KITCHEN, &["countertop", "diningtable", "cabinet", "drawer", "shelf", "sidetable"]),
    obj("pillow", 0, BEDROOM | LIVINGROOM, &["bed", "armchair", "sofa"]),
    obj("plate", C | H | K | R, KITCHEN | LIVINGROOM, &["cabinet", "countertop", "diningtable", "fridge", "shelf", "sinkbasin", "microwave", "sidetable", "coffeetable"]),
    obj("pot", C | K | R, KITCHEN, &["stoveburner", "cabinet", "countertop", "diningtable", "fridge", "shelf", "sinkbasin"]),
    obj("potato", C | H | K, KITCHEN, &["fridge", "countertop", "diningtable", "sinkbasin", "garbagecan", "microwave", "sidetable"]),
    obj("remotecontrol", 0, LIVINGROOM, &["sofa", "coffeetable", "armchair", "sidetable", "dresser", "diningtable", "drawer", "tvstand"]),
    obj("saltshaker", 0, KITCHEN, &["countertop", "diningtable", "cabinet", "drawer", "shelf", "sidetable"]),
    obj("soapbar", C, BATHROOM, &["cabinet", "countertop", "sinkbasin", "bathtubbasin", "toilet", "shelf", "garbagecan", "drawer"]),
    obj("soapbottle", 0, KITCHEN | BATHROOM, &["countertop", "diningtable", "cabinet", "shelf", "sinkbasin", "garbagecan", "sidetable", "toilet", "bathtubbasin", "drawer", "dresser"]),
    obj("spatula", C, KITCHEN, &["drawer", "countertop", "diningtable", "sinkbasin", "sidetable"]),
    obj("spoon", C, KITCHEN, &["drawer", "countertop", "diningtable", "sinkbasin", "sidetable"]),
    obj("spraybottle", 0, BATHROOM, &["cabinet", "countertop", "toilet", "shelf", "garbagecan", "drawer", "dresser"]),
    obj("statue", 0, KITCHEN | LIVINGROOM, &["shelf", "countertop", "diningtable", "coffeetable", "sidetable", "dresser", "cabinet", "tvstand"]),
    obj("television", FIXED, LIVINGROOM, &["dresser", "tvstand"]),
    obj("tissuebox", 0, BATHROOM | BEDROOM | LIVINGROOM, &["countertop", "toilet", "shelf", "cabinet", "dresser", "sidetable", "coffeetable", "desk"]),
    obj("toiletpaper", 0, BATHROOM, &["toiletpaperhanger", "cabinet", "countertop", "toilet", "shelf", "drawer", "garbagecan"]),
    obj("tomato", C | H | K, KITCHEN, &["fridge", "countertop", "diningtable", "sinkbasin", "garbagecan", "microwave", "sidetable"]),
    obj("towel", 0, BATHROOM, &["towelholder", "countertop", "cabinet", "bathtubbasin"]),
    obj("vase", 0, KITCHEN | LIVINGROOM, &["shelf", "countertop", "diningtable", "coffeetable", "sidetable", "dresser", "cabinet", "tvstand"]),
    obj("watch", 0, LIVINGROOM, &["coffeetable", "sidetable", "dresser", "drawer", "safe", "shelf", "tvstand"]),
    obj("winebottle", K, KITCHEN, &["countertop", "diningtable", "cabinet", "fridge", "shelf", "garbagecan", "sidetable"]),
];

const fn obj(
    name: &'static str,
    props: u8,
    rooms: u8,
    places: &'static [&'static str],
) -> ObjectKind {
    ObjectKind {
        name,
        props,
        rooms,
        places,
    }
}

/// The catalog entry for an object kind, if it has one.
pub(crate) fn object_kind(name: &str) -> Option<&'static ObjectKind> {
    OBJECTS
        .binary_search_by(|k| k.name.cmp(name))
        .ok()
        .map(|i| &OBJECTS[i])
}

/// How many receptacles of one kind a room has.
pub(crate) struct RecepRule {
    /// The receptacle kind.
    pub kind: &'static str,
    /// Fewest instances.
    pub min: u8,
    /// Most instances.
    pub max: u8,
    /// Percent chance that an instance can be opened (0: never, 100: always).
    pub openable: u8,
    /// Percent chance that an openable instance starts open.
    pub starts_open: u8,
}

const fn rule(kind: &'static str, min: u8, max: u8, openable: u8, starts_open: u8) -> RecepRule {
    RecepRule {
        kind,
        min,
        max,
        openable,
        starts_open,
    }
}

/// A kitchen, as ALFWorld's kitchens (floor plans 1-30).
pub(crate) const KITCHEN_RULES: &[RecepRule] = &[
    rule("cabinet", 3, 16, 85, 10),
    rule("coffeemachine", 1, 1, 0, 0),
    rule("countertop", 1, 3, 0, 0),
    rule("diningtable", 0, 2, 0, 0),
    rule("drawer", 1, 6, 75, 10),
    rule("fridge", 1, 1, 100, 0),
    rule("garbagecan", 1, 1, 0, 0),
    rule("microwave", 1, 1, 100, 0),
    rule("shelf", 0, 3, 0, 0),
    rule("sidetable", 0, 1, 0, 0),
    rule("sinkbasin", 1, 1, 0, 0),
    rule("stoveburner", 2, 4, 0, 0),
    rule("toaster", 1, 1, 0, 0),
];

/// A bathroom (ALFWorld floor plans 401-430).
pub(crate) const BATHROOM_RULES: &[RecepRule] = &[
    rule("bathtubbasin", 0, 1, 0, 0),
    rule("cabinet", 0, 4, 100, 10),
    rule("countertop", 1, 1, 0, 0),
    rule("drawer", 0, 4, 100, 10),
    rule("dresser", 0, 1, 0, 0),
    rule("garbagecan", 1, 1, 0, 0),
    rule("handtowelholder", 1, 2, 0, 0),
    rule("shelf", 0, 3, 0, 0),
    rule("sinkbasin", 1, 2, 0, 0),
    rule("toilet", 1, 1, 0, 0),
    rule("toiletpaperhanger", 1, 1, 0, 0),
    rule("towelholder", 1, 1, 0, 0),
];

/// A bedroom (ALFWorld floor plans 301-330).
pub(crate) const BEDROOM_RULES: &[RecepRule] = &[
    rule("armchair", 0, 1, 0, 0),
    rule("bed", 1, 1, 0, 0),
    rule("desk", 0, 2, 0, 0),
    rule("drawer", 2, 10, 70, 10),
    rule("dresser", 0, 1, 0, 0),
    rule("garbagecan", 1, 1, 0, 0),
    rule("laundryhamper", 0, 1, 0, 0),
    rule("safe", 0, 1, 100, 0),
    rule("shelf", 1, 6, 0, 0),
    rule("sidetable", 0, 2, 0, 0),
];

/// A living room (ALFWorld floor plans 201-230).
pub(crate) const LIVINGROOM_RULES: &[RecepRule] = &[
    rule("armchair", 0, 2, 0, 0),
    rule("cabinet", 0, 4, 100, 10),
    rule("coffeetable", 1, 2, 0, 0),
    rule("diningtable", 0, 1, 0, 0),
    rule("drawer", 1, 4, 80, 10),
    rule("dresser", 0, 1, 0, 0),
    rule("garbagecan", 1, 1, 0, 0),
    rule("safe", 0, 1, 100, 0),
    rule("shelf", 0, 4, 0, 0),
    rule("sidetable", 1, 2, 0, 0),
    rule("sofa", 1, 1, 0, 0),
    rule("tvstand", 0, 1, 0, 0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_catalog_is_sorted_so_lookups_find_every_kind() {
        for w in OBJECTS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for k in OBJECTS {
            assert_eq!(object_kind(k.name).map(|o| o.name), Some(k.name));
        }
        assert!(object_kind("pineapple").is_none());
    }

    #[test]
    fn every_object_place_is_a_receptacle_some_room_has() {
        let all: Vec<&str> = [
            KITCHEN_RULES,
            BATHROOM_RULES,
            BEDROOM_RULES,
            LIVINGROOM_RULES,
        ]
        .iter()
        .flat_map(|r| r.iter().map(|r| r.kind))
        .collect();
        for k in OBJECTS {
            for p in k.places {
                assert!(all.contains(p), "{} lies on {p}, which no room has", k.name);
            }
        }
    }
}
