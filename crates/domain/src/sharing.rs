//! What a patient shares with someone outside their care teams: categories of data, a
//! window of time the data was measured in, and how long the share lasts. The rules here
//! are pure; the access check applies them, and the store queries take the window.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::codes::ObservationCode;

/// A kind of data a share may open.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareCategory {
    /// Glucose from CGMs, meters and blood tests, and the CGM report.
    Glucose,
    /// ECG waveforms, R-R intervals and rhythm events.
    Ecg,
    /// Heart rate, oxygen saturation, temperature, respiratory rate, blood pressure,
    /// weight, peak flow, and NEWS2 scores.
    VitalSigns,
    /// The patient's alarms and their history.
    Alarms,
    /// The care plan and its versions.
    CarePlan,
}

impl ShareCategory {
    pub const ALL: [ShareCategory; 5] = [
        ShareCategory::Glucose,
        ShareCategory::Ecg,
        ShareCategory::VitalSigns,
        ShareCategory::Alarms,
        ShareCategory::CarePlan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ShareCategory::Glucose => "glucose",
            ShareCategory::Ecg => "ecg",
            ShareCategory::VitalSigns => "vital_signs",
            ShareCategory::Alarms => "alarms",
            ShareCategory::CarePlan => "care_plan",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|category| category.as_str() == text)
    }

    /// The category an observation of this code belongs to.
    pub fn of_code(code: ObservationCode) -> ShareCategory {
        match code {
            ObservationCode::GlucoseCgm
            | ObservationCode::GlucoseMeter
            | ObservationCode::GlucoseBlood => ShareCategory::Glucose,
            ObservationCode::RrInterval => ShareCategory::Ecg,
            ObservationCode::HeartRate
            | ObservationCode::OxygenSaturation
            | ObservationCode::OxygenSaturationPulseOximetry
            | ObservationCode::BodyTemperature
            | ObservationCode::RespiratoryRate
            | ObservationCode::SystolicBloodPressure
            | ObservationCode::DiastolicBloodPressure
            | ObservationCode::MeanBloodPressure
            | ObservationCode::BodyWeight
            | ObservationCode::BodyHeight
            | ObservationCode::BodyMassIndex
            | ObservationCode::PeakExpiratoryFlow => ShareCategory::VitalSigns,
        }
    }
}

/// Which data a share opens: its categories, measured within `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareScope {
    pub categories: Vec<ShareCategory>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl ShareScope {
    pub fn allows(&self, category: ShareCategory) -> bool {
        self.categories.contains(&category)
    }

    /// The part of `[from, to)` the share opens, if any: a read asks the store for this
    /// window only, so nothing outside it is ever read.
    pub fn clamp(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let from = from.max(self.from);
        let to = to.min(self.to);
        (from < to).then_some((from, to))
    }
}

/// The longest a share may last unless an administrator allows longer.
pub const DEFAULT_MAX_SHARE_DAYS: i64 = 90;
/// How long a share lasts when its maker says nothing.
pub const DEFAULT_SHARE_DAYS: i64 = 30;

/// The window of data a share opens, as its maker gives it: the last so many days (up to
/// when the share is made), or a fixed range.
pub fn share_window(
    now: DateTime<Utc>,
    last_days: Option<i64>,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), &'static str> {
    match (last_days, range) {
        (Some(days), None) if (1..=3650).contains(&days) => Ok((now - Duration::days(days), now)),
        (Some(_), None) => Err("data_last_days is 1 to 3650"),
        (None, Some((from, to))) if from < to && to <= now + Duration::days(1) => Ok((from, to)),
        (None, Some(_)) => Err("data_from must be before data_to, and data_to not in the future"),
        (Some(_), Some(_)) => Err("give data_last_days or data_from and data_to, not both"),
        (None, None) => Err("give the window of data: data_last_days, or data_from and data_to"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::days(20_000 + days)
    }

    #[test]
    fn a_window_is_clamped_to_the_share() {
        let scope = ShareScope {
            categories: vec![ShareCategory::Ecg],
            from: at(-30),
            to: at(0),
        };
        assert_eq!(scope.clamp(at(-90), at(10)), Some((at(-30), at(0))));
        assert_eq!(scope.clamp(at(-10), at(-5)), Some((at(-10), at(-5))));
        assert_eq!(scope.clamp(at(-90), at(-31)), None, "entirely before");
        assert_eq!(scope.clamp(at(0), at(5)), None, "entirely after");
        assert!(scope.allows(ShareCategory::Ecg));
        assert!(!scope.allows(ShareCategory::Glucose));
    }

    #[test]
    fn every_code_has_a_category_and_categories_read_back() {
        for spec in crate::codes::CATALOGUE {
            let _ = ShareCategory::of_code(spec.code);
        }
        assert_eq!(
            ShareCategory::of_code(ObservationCode::GlucoseCgm),
            ShareCategory::Glucose
        );
        assert_eq!(
            ShareCategory::of_code(ObservationCode::RrInterval),
            ShareCategory::Ecg
        );
        for category in ShareCategory::ALL {
            assert_eq!(ShareCategory::parse(category.as_str()), Some(category));
        }
        assert_eq!(ShareCategory::parse("everything"), None);
    }

    #[test]
    fn the_window_is_the_last_days_or_a_range_never_both() {
        let now = at(0);
        assert_eq!(share_window(now, Some(30), None), Ok((at(-30), now)));
        assert!(share_window(now, Some(0), None).is_err());
        assert_eq!(
            share_window(now, None, Some((at(-5), at(-1)))),
            Ok((at(-5), at(-1)))
        );
        assert!(share_window(now, None, Some((at(-1), at(-5)))).is_err());
        assert!(share_window(now, Some(3), Some((at(-5), at(-1)))).is_err());
        assert!(share_window(now, None, None).is_err());
    }
}
