//! Kernel route protocol numbers (`ip route show proto N`): each owner removes only its own
//! routes, and an operator can list them apart.

/// The CNI plugin's /32 and /128 host routes to local pods.
pub const CNI_ROUTE_PROTOCOL: u8 = 91;

/// The BGP speaker's learned routes (its `route_protocol` default; FRR's zebra uses 186, bird
/// 12, so none of them touches another's routes).
pub const BGP_ROUTE_PROTOCOL: u8 = 201;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_have_distinct_numbers_clear_of_the_kernel_and_routing_daemons() {
        assert_ne!(CNI_ROUTE_PROTOCOL, BGP_ROUTE_PROTOCOL);
        // 0..=4 are the kernel's own (unspec, redirect, kernel, boot, static); 186 is FRR's
        // bgp, 12 bird's.
        for n in [CNI_ROUTE_PROTOCOL, BGP_ROUTE_PROTOCOL] {
            assert!(n > 4 && n != 186 && n != 12, "{n}");
        }
    }
}
