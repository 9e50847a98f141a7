//! The simulated supplier contract: DSMR-reader's prices and its cost arithmetic (per item in
//! cents, rounded half up before the total), shared by the API's answers and the archive's
//! day rows.

/// Prices of the fixture's supplier contract in micro-euro per kWh, per m³ or per day.
pub(crate) const PRICE_DELIVERED: [i64; 2] = [257_310, 273_190];
pub(crate) const PRICE_RETURNED: [i64; 2] = [90_000, 90_000];
pub(crate) const PRICE_GAS: i64 = 1_384_120;
pub(crate) const PRICE_FIXED: i64 = 951_230;

/// A day's costs in cents, rounded per item before the total as DSMR-reader does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DayCosts {
    pub electricity1: i64,
    pub electricity2: i64,
    pub gas: i64,
    pub fixed: i64,
    pub total: i64,
}

/// A day's costs in cents from its consumption (`energy` in Wh as delivered_1, returned_1,
/// delivered_2, returned_2; `gas` in litres).
pub(crate) fn day_costs(energy: [u64; 4], gas: u64) -> DayCosts {
    DayCosts::new(energy, gas)
}

impl DayCosts {
    /// `energy` in Wh (delivered_1, returned_1, delivered_2, returned_2), `gas` in litres.
    pub(crate) fn new(energy: [u64; 4], gas: u64) -> Self {
        let [e1, e1r, e2, e2r] = energy.map(i128::from);
        // Returned energy is credited against the same tariff's delivered energy.
        let electricity1 =
            cents(e1 * i128::from(PRICE_DELIVERED[0]) - e1r * i128::from(PRICE_RETURNED[0]));
        let electricity2 =
            cents(e2 * i128::from(PRICE_DELIVERED[1]) - e2r * i128::from(PRICE_RETURNED[1]));
        let gas = cents(i128::from(gas) * i128::from(PRICE_GAS));
        // The fixed cost is a price per day, not per unit: scale micro-euros to nano-euros.
        let fixed = cents(i128::from(PRICE_FIXED) * 1_000);
        Self {
            electricity1,
            electricity2,
            gas,
            fixed,
            total: electricity1
                .saturating_add(electricity2)
                .saturating_add(gas)
                .saturating_add(fixed),
        }
    }
}

/// DSMR-reader's live cost: delivered at the current tariff's price minus returned at its
/// return price, in cents.
pub(crate) fn cost_per_hour(delivered_w: u32, returned_w: u32, tariff: u8) -> i64 {
    let i = usize::from(tariff.clamp(1, 2) - 1);
    cents(
        i128::from(delivered_w) * i128::from(PRICE_DELIVERED[i])
            - i128::from(returned_w) * i128::from(PRICE_RETURNED[i]),
    )
}

/// Rounds nano-euros (Wh × µ€/kWh) to cents, half away from zero like `ROUND_HALF_UP`.
pub(crate) fn cents(nano_euro: i128) -> i64 {
    const NANO_PER_CENT: i128 = 10_000_000;
    let rounded = (nano_euro.abs() + NANO_PER_CENT / 2) / NANO_PER_CENT;
    let signed = if nano_euro < 0 { -rounded } else { rounded };
    i64::try_from(signed).unwrap_or(if signed < 0 { i64::MIN } else { i64::MAX })
}

/// Django's `number_format` of a two-decimal amount, as in `cost_per_hour`.
pub(crate) fn euro_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_costs_match_the_fixture_arithmetic() {
        // v2_consumption_today.json: 5.052/1.011 kWh (tariff 1), 3.032/4.042 kWh (tariff 2), 1.513 m³.
        let costs = DayCosts::new([5_052, 1_011, 3_032, 4_042], 1_513);
        assert_eq!(
            costs,
            DayCosts {
                electricity1: 121,
                electricity2: 46,
                gas: 209,
                fixed: 95,
                total: 471,
            }
        );
        // v2_consumption_electricity-live.json: 404 W delivered, 208 W returned, tariff 1.
        assert_eq!(euro_text(cost_per_hour(404, 208, 1)), "0.09");
        assert_eq!(euro_text(cost_per_hour(0, 900, 2)), "-0.08");
        // v2_consumption_gas-live.json: 0.006 m³.
        assert_eq!(euro_text(cents(6 * i128::from(PRICE_GAS))), "0.01");
        assert_eq!(cents(-5_000_000), -1);
        assert_eq!(cents(4_999_999), 0);
    }
}
