//! The closed vocabularies a record is made of: support level, age band,
//! primary need, introduction source and outcome.
//!
//! Each enum mirrors its proto enum value for value (so conversion is a
//! lookup), has a stable snake_case id used in metric ids and CSV files, and a
//! human label for reports. `UNSPECIFIED` (0) has no variant here: validation
//! refuses it before a value of these types can exist.

use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $id:literal, $label:literal; )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every value, in proto order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The proto enum number.
            pub fn code(self) -> i32 {
                self as i32
            }

            /// Looks up a proto enum number; `None` for 0 (unspecified) and unknown values.
            pub fn from_code(code: i32) -> Option<Self> {
                match code {
                    $( $code => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// Stable snake_case id, used in metric ids and CSV files.
            pub fn id(self) -> &'static str {
                match self {
                    $( $name::$variant => $id, )+
                }
            }

            /// Looks up a stable id (as written by [`Self::id`]).
            pub fn from_id(id: &str) -> Option<Self> {
                match id {
                    $( $id => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// Label for people reading reports.
            pub fn label(self) -> &'static str {
                match self {
                    $( $name::$variant => $label, )+
                }
            }

            /// Position in [`Self::ALL`], for dense counting arrays.
            pub fn index(self) -> usize {
                self as usize - 1
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.id())
            }
        }
    };
}

vocabulary! {
    /// How intensively a coordinator supports a person (the seeds' two levels).
    SupportLevel {
        /// Information and advice; no assessment, open to anyone.
        Level1 = 1, "level_1", "Level 1 (information and advice)";
        /// A longer-term relationship with a vulnerable person.
        Level2 = 2, "level_2", "Level 2 (longer-term support)";
    }
}

vocabulary! {
    /// Age at introduction. The exact age stays at the site; only the band is stored.
    AgeBand {
        /// Under 18 (LAC mainly supports adults, but councils may record younger people).
        Under18 = 1, "under_18", "Under 18";
        /// 18 to 24.
        From18To24 = 2, "18_24", "18-24";
        /// 25 to 34.
        From25To34 = 3, "25_34", "25-34";
        /// 35 to 44.
        From35To44 = 4, "35_44", "35-44";
        /// 45 to 54.
        From45To54 = 5, "45_54", "45-54";
        /// 55 to 64.
        From55To64 = 6, "55_64", "55-64";
        /// 65 to 74.
        From65To74 = 7, "65_74", "65-74";
        /// 75 to 84.
        From75To84 = 8, "75_84", "75-84";
        /// 85 and over.
        From85 = 9, "85_plus", "85+";
    }
}

vocabulary! {
    /// The broad groups the age bands roll up to.
    AgeGroup {
        /// Under 18.
        Under18 = 1, "under_18", "Under 18";
        /// Working age, 18 to 64.
        From18To64 = 2, "18_64", "18-64";
        /// Older people, 65 and over.
        From65 = 3, "65_plus", "65+";
    }
}

vocabulary! {
    /// Primary need, aligned with the SALT "primary support reason" where it can be.
    PrimaryNeed {
        /// Older people and frailty.
        OlderPeopleFrailty = 1, "older_people_frailty", "Older people / frailty";
        /// Mental health.
        MentalHealth = 2, "mental_health", "Mental health";
        /// Learning disability.
        LearningDisability = 3, "learning_disability", "Learning disability";
        /// Physical disability.
        PhysicalDisability = 4, "physical_disability", "Physical disability";
        /// Sensory impairment.
        SensoryImpairment = 5, "sensory_impairment", "Sensory impairment";
        /// Memory and cognition.
        MemoryCognition = 6, "memory_cognition", "Memory and cognition";
        /// Long-term condition.
        LongTermCondition = 7, "long_term_condition", "Long-term condition";
        /// Carer.
        Carer = 8, "carer", "Carer";
        /// Social isolation.
        SocialIsolation = 9, "social_isolation", "Social isolation";
        /// Other.
        Other = 10, "other", "Other";
    }
}

vocabulary! {
    /// Who introduced the person to their coordinator.
    IntroductionSource {
        /// The person themselves.
        SelfReferral = 1, "self", "Self";
        /// Family or friend.
        FamilyFriend = 2, "family_friend", "Family or friend";
        /// GP or other health service.
        GpHealth = 3, "gp_health", "GP or health";
        /// Adult social care.
        AdultSocialCare = 4, "adult_social_care", "Adult social care";
        /// Mental health team.
        MentalHealthTeam = 5, "mental_health_team", "Mental health team";
        /// Housing.
        Housing = 6, "housing", "Housing";
        /// Police or fire service.
        PoliceFire = 7, "police_fire", "Police or fire";
        /// Voluntary or community sector.
        VoluntaryCommunity = 8, "voluntary_community", "Voluntary or community sector";
        /// Other.
        Other = 9, "other", "Other";
    }
}

vocabulary! {
    /// Something that happened for the person. A record may carry several.
    Outcome {
        /// A crisis was avoided.
        CrisisAvoided = 1, "crisis_avoided", "Crisis avoided";
        /// Connected with a community group or network.
        CommunityConnection = 2, "community_connection", "Community connection made";
        /// Took up volunteering.
        Volunteering = 3, "volunteering", "Volunteering";
        /// Found an alternative to day services.
        AlternativeToDayServices = 4, "alternative_to_day_services", "Alternative to day services";
        /// Used GP or A&E less.
        ReducedGpAeUse = 5, "reduced_gp_ae_use", "Reduced GP or A&E use";
        /// Kept their tenancy.
        TenancySustained = 6, "tenancy_sustained", "Tenancy sustained";
        /// A social care referral was avoided.
        SocialCareReferralAvoided = 7, "social_care_referral_avoided", "Social care referral avoided";
        /// Training or employment.
        TrainingEmployment = 8, "training_employment", "Training or employment";
        /// A carer was supported to keep caring.
        CarerSupported = 9, "carer_supported", "Carer supported to keep caring";
    }
}

/// The day each outcome was achieved, indexed by [`Outcome::index`]; `None`
/// where the outcome is undated or absent.
pub type OutcomeDates = [Option<crate::date::Date>; 9];

/// No outcome dated.
pub const NO_OUTCOME_DATES: OutcomeDates = [None; 9];

impl AgeBand {
    /// The band for an age in whole years.
    pub fn from_age(age: u32) -> Self {
        match age {
            0..=17 => AgeBand::Under18,
            18..=24 => AgeBand::From18To24,
            25..=34 => AgeBand::From25To34,
            35..=44 => AgeBand::From35To44,
            45..=54 => AgeBand::From45To54,
            55..=64 => AgeBand::From55To64,
            65..=74 => AgeBand::From65To74,
            75..=84 => AgeBand::From75To84,
            _ => AgeBand::From85,
        }
    }

    /// The broad group this band rolls up to.
    pub fn group(self) -> AgeGroup {
        match self {
            AgeBand::Under18 => AgeGroup::Under18,
            AgeBand::From65To74 | AgeBand::From75To84 | AgeBand::From85 => AgeGroup::From65,
            _ => AgeGroup::From18To64,
        }
    }
}

/// A set of outcomes as a bit set: outcomes are few and a record repeats none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OutcomeSet(u16);

impl OutcomeSet {
    /// The empty set.
    pub const EMPTY: OutcomeSet = OutcomeSet(0);

    /// Adds an outcome; returns false if it was already present.
    pub fn insert(&mut self, outcome: Outcome) -> bool {
        let bit = 1u16 << outcome.index();
        let fresh = self.0 & bit == 0;
        self.0 |= bit;
        fresh
    }

    /// Whether the set holds `outcome`.
    pub fn contains(self, outcome: Outcome) -> bool {
        self.0 & (1u16 << outcome.index()) != 0
    }

    /// Union of two sets.
    pub fn union(self, other: OutcomeSet) -> OutcomeSet {
        OutcomeSet(self.0 | other.0)
    }

    /// The outcomes present, in proto order.
    pub fn iter(self) -> impl Iterator<Item = Outcome> {
        Outcome::ALL
            .iter()
            .copied()
            .filter(move |o| self.contains(*o))
    }

    /// Raw bits, for compact storage.
    pub fn bits(self) -> u16 {
        self.0
    }

    /// Rebuilds a set from [`Self::bits`]; `None` if unknown bits are set.
    pub fn from_bits(bits: u16) -> Option<Self> {
        let known = (1u16 << Outcome::ALL.len()) - 1;
        (bits & !known == 0).then_some(OutcomeSet(bits))
    }

    /// Number of outcomes in the set.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_ids_and_indices_round_trip() {
        for n in PrimaryNeed::ALL {
            assert_eq!(PrimaryNeed::from_code(n.code()), Some(*n));
            assert_eq!(PrimaryNeed::from_id(n.id()), Some(*n));
            assert_eq!(PrimaryNeed::ALL[n.index()], *n);
        }
        assert_eq!(Outcome::from_code(0), None);
        assert_eq!(Outcome::from_code(99), None);
    }

    #[test]
    fn age_bands_have_the_brief_boundaries_and_roll_up() {
        assert_eq!(AgeBand::from_age(17), AgeBand::Under18);
        assert_eq!(AgeBand::from_age(18), AgeBand::From18To24);
        assert_eq!(AgeBand::from_age(64), AgeBand::From55To64);
        assert_eq!(AgeBand::from_age(65), AgeBand::From65To74);
        assert_eq!(AgeBand::from_age(85), AgeBand::From85);
        assert_eq!(AgeBand::from_age(120), AgeBand::From85);
        assert_eq!(AgeBand::From55To64.group(), AgeGroup::From18To64);
        assert_eq!(AgeBand::From75To84.group(), AgeGroup::From65);
    }

    #[test]
    fn outcome_set_refuses_repeats_and_unknown_bits() {
        let mut set = OutcomeSet::EMPTY;
        assert!(set.insert(Outcome::Volunteering));
        assert!(!set.insert(Outcome::Volunteering));
        assert!(set.insert(Outcome::CarerSupported));
        assert_eq!(set.len(), 2);
        assert_eq!(OutcomeSet::from_bits(set.bits()), Some(set));
        assert_eq!(OutcomeSet::from_bits(1 << 12), None);
    }
}
