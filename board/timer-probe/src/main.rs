//! Checks the time paths the agent depends on; exits 1 on the first failure.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::time::{
    clock_gettime, timerfd_create, timerfd_gettime, timerfd_settime, ClockId, Itimerspec,
    TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec,
};

/// 2040-01-01T00:00:00Z: past the 32-bit time_t limit (2038-01-19).
const Y2040: i64 = 2_208_988_800;

fn check(ok: bool, what: &str) {
    if ok {
        println!("ok   {what}");
    } else {
        println!("FAIL {what}");
        std::process::exit(1);
    }
}

fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    }
}

fn main() {
    println!(
        "timer probe: {} {}-endian, size_of::<Timespec>() = {}",
        std::env::consts::ARCH,
        if cfg!(target_endian = "big") {
            "big"
        } else {
            "little"
        },
        std::mem::size_of::<Timespec>()
    );

    // clock_gettime through rustix (libc's struct timespec on output).
    let m1 = clock_gettime(ClockId::Monotonic);
    let m2 = clock_gettime(ClockId::Monotonic);
    check(
        (0..1_000_000_000).contains(&(m1.tv_nsec as i64))
            && (m2.tv_sec, m2.tv_nsec as i64) >= (m1.tv_sec, m1.tv_nsec as i64),
        &format!("clock_gettime(MONOTONIC) = {}.{:09}", m1.tv_sec, m1.tv_nsec),
    );
    let r = clock_gettime(ClockId::Realtime);
    let std_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    check(
        (r.tv_sec - std_now).abs() <= 2 && (0..1_000_000_000).contains(&(r.tv_nsec as i64)),
        &format!(
            "clock_gettime(REALTIME) = {}.{:09}, std says {std_now}",
            r.tv_sec, r.tv_nsec
        ),
    );

    // A sub-second relative timerfd: the value must read back (not disarmed)
    // and the fd must become readable on time.
    let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC).unwrap();
    let old = timerfd_settime(
        &fd,
        TimerfdTimerFlags::empty(),
        &Itimerspec {
            it_interval: ts(0, 0),
            it_value: ts(0, 250_000_000),
        },
    )
    .unwrap();
    check(
        old.it_value.tv_sec == 0 && old.it_value.tv_nsec as i64 == 0,
        "timerfd_settime: old value of a new timer is 0",
    );
    let t0 = Instant::now();
    let cur = timerfd_gettime(&fd).unwrap();
    check(
        cur.it_value.tv_sec == 0 && (1..=250_000_000).contains(&(cur.it_value.tv_nsec as i64)),
        &format!(
            "timerfd_gettime after 0.25 s: {}.{:09} left (0 = disarmed)",
            cur.it_value.tv_sec, cur.it_value.tv_nsec
        ),
    );
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let n = poll(&mut fds, Some(&ts(3, 0))).unwrap();
    let waited = t0.elapsed();
    check(
        n == 1 && waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
        &format!("timerfd fired after {waited:?} (poll with a 3 s timespec timeout)"),
    );

    // Absolute realtime timerfd in 2040: needs a 64-bit time_t end to end.
    let fd = timerfd_create(TimerfdClockId::Realtime, TimerfdFlags::CLOEXEC).unwrap();
    let res = timerfd_settime(
        &fd,
        TimerfdTimerFlags::ABSTIME,
        &Itimerspec {
            it_interval: ts(0, 0),
            it_value: ts(Y2040, 500_000_000),
        },
    );
    check(
        res.is_ok(),
        &format!(
            "timerfd_settime(ABSTIME, 2040-01-01): {:?}",
            res.as_ref().err()
        ),
    );
    let cur = timerfd_gettime(&fd).unwrap();
    let expect = Y2040 - std_now;
    check(
        (cur.it_value.tv_sec - expect).abs() <= 5
            && (0..1_000_000_000).contains(&(cur.it_value.tv_nsec as i64)),
        &format!(
            "2040 timer reads back {} s left (expected ~{expect})",
            cur.it_value.tv_sec
        ),
    );

    // nanosleep through rustix (timespec in, remainder out).
    let t0 = Instant::now();
    let _ = rustix::thread::nanosleep(&ts(0, 150_000_000));
    let slept = t0.elapsed();
    check(
        slept >= Duration::from_millis(140) && slept < Duration::from_secs(2),
        &format!("nanosleep(0.15 s) slept {slept:?}"),
    );

    // async-io's Timer: polling's epoll + timerfd, i.e. what smol::Timer does.
    let t0 = Instant::now();
    futures_lite::future::block_on(async_io::Timer::after(Duration::from_millis(300)));
    let took = t0.elapsed();
    check(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        &format!("async_io::Timer::after(300 ms) fired after {took:?}"),
    );
    let t0 = Instant::now();
    for _ in 0..5 {
        futures_lite::future::block_on(async_io::Timer::after(Duration::from_millis(20)));
    }
    let took = t0.elapsed();
    check(
        took >= Duration::from_millis(100) && took < Duration::from_secs(3),
        &format!("5 x Timer::after(20 ms) took {took:?}"),
    );

    println!("timer probe: all ok");
}
