//! The sample health report both benchmarks encode.

use edge_gw::proto::v2;

/// A router's typical report: 4 cores, 3 interfaces, 3 filesystems, 2
/// thermal zones, conntrack and two custom metrics.
pub fn typical_report(seq: u32) -> v2::Report {
    use v2::{FsUsage, Health, Memory, NetIf, Temperature};
    let netif = |name: &str, k: u64| NetIf {
        name: name.into(),
        rx_bytes: 1_234_567_890 * k,
        tx_bytes: 987_654_321 * k,
        rx_packets: 4_567_890 * k,
        tx_packets: 3_456_789 * k,
        rx_errors: k,
        tx_errors: 0,
    };
    let fs = |mount: &str, total_kb, avail_kb| FsUsage {
        mount: mount.into(),
        total_kb,
        avail_kb,
    };
    v2::Report {
        seq,
        unix_ms: 1_700_000_000_000,
        age_ms: 12,
        dropped: 0,
        health: Health {
            uptime_s: 3_456_789,
            cpu_permille: 137,
            cpu_cores: vec![120, 98, 201, 130],
            load_x100: [45, 38, 30],
            memory: Memory {
                total_kb: 247_736,
                available_kb: 163_420,
                free_kb: 120_312,
                buffers_kb: 4_096,
                cached_kb: 38_920,
            },
            processes: 87,
            net: vec![netif("lo", 1), netif("eth0", 7), netif("wlan0", 3)],
            fs: vec![
                fs("/", 14_336, 0),
                fs("/tmp", 123_868, 121_004),
                fs("/overlay", 81_920, 60_112),
            ],
            temps: vec![
                Temperature {
                    zone: "cpu-thermal".into(),
                    milli_c: 54_300,
                },
                Temperature {
                    zone: "wifi-thermal".into(),
                    milli_c: 48_100,
                },
            ],
            conntrack: Some(312),
            custom: vec![
                ("wan".into(), "up".into()),
                ("signal_dbm".into(), "-67".into()),
            ],
        },
    }
}
