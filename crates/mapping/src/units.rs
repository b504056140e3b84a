//! Units as templates write them, to the UCUM codes Wardline's catalogue uses. iomt-fhir
//! copies a template's unit text into the observation unchanged, so templates say
//! "count/min", "bpm" or "mmHg" as often as the UCUM "/min" and "mm[Hg]".

/// The UCUM code of a unit a template states; a unit not listed is taken as written
/// (and refused later if it is not a unit of the reading's code).
pub fn ucum_unit(unit: &str) -> &str {
    let unit = unit.trim();
    const ALIASES: &[(&[&str], &str)] = &[
        (
            &[
                "count/min",
                "{count}/min",
                "counts/min",
                "beats/min",
                "beats/minute",
                "bpm",
                "breaths/min",
                "breaths/minute",
                "1/min",
                "min-1",
                "per minute",
            ],
            "/min",
        ),
        (&["mmhg", "mm hg", "mm[hg]"], "mm[Hg]"),
        (&["kpa"], "kPa"),
        (&["percent", "%"], "%"),
        (&["degc", "°c", "cel", "celsius"], "Cel"),
        (&["degf", "°f", "[degf]", "fahrenheit"], "[degF]"),
        (&["mg/dl"], "mg/dL"),
        (&["mmol/l"], "mmol/L"),
        (&["kg", "kilogram", "kilograms"], "kg"),
        (&["lb", "lbs", "[lb_av]", "pound", "pounds"], "[lb_av]"),
        (&["l/min"], "L/min"),
    ];
    let lower = unit.to_lowercase();
    ALIASES
        .iter()
        .find(|(names, _)| names.contains(&lower.as_str()))
        .map_or(unit, |(_, ucum)| ucum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_units_become_ucum() {
        assert_eq!(ucum_unit("count/min"), "/min");
        assert_eq!(ucum_unit("bpm"), "/min");
        assert_eq!(ucum_unit("breaths/minute"), "/min");
        assert_eq!(ucum_unit("mmHg"), "mm[Hg]");
        assert_eq!(ucum_unit("degC"), "Cel");
        assert_eq!(ucum_unit("mg/dL"), "mg/dL");
        assert_eq!(ucum_unit(" kg "), "kg");
        // Not a unit we know: as written, for the catalogue to refuse.
        assert_eq!(ucum_unit("furlongs"), "furlongs");
    }
}
