#!/usr/bin/env perl
#
# bench/semantic.sh -c: the latency of an exact hit, paced, on one kept
# connection: COUNT requests of the body in FILE, one every INTERVAL
# microseconds (a bounded, open loop: a slow answer does not slow the
# next ones' schedule down), then "requests=N p50_us= p99_us= max_us=
# non200=".  Core Perl only.
#
#   semantic_hits.pl PORT PATH FILE COUNT INTERVAL

use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my ($port, $path, $file, $count, $interval) = @ARGV;
die "usage: $0 PORT PATH FILE COUNT INTERVAL\n" unless $interval;

open my $fh, '<', $file or die "$file: $!\n";
my $body = do { local $/; <$fh> };

my $req = "POST $path HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          . "Content-Type: application/json\r\n"
          . "Content-Length: " . length($body) . "\r\n\r\n$body";

my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Proto => 'tcp')
    or die "connect: $!\n";
$s->autoflush(1);

# the connection is made: the caller sees it (ss) before the first one
print STDERR "connected\n";
sleep 1;

my (@lat, $bad);
$bad = 0;
my $next = time;

for (1 .. $count) {
    my $now = time;
    sleep($next - $now) if $next > $now;
    $next += $interval / 1e6;

    my $t0 = time;
    print $s $req;

    my $buf = '';
    my ($status, $len);
    while (1) {
        my $n = sysread($s, $buf, 65536, length $buf);
        die "read: connection closed\n" unless $n;
        my $e = index($buf, "\r\n\r\n");
        next if $e < 0;
        ($status) = $buf =~ m{^HTTP/1\.1 (\d+)};
        ($len) = $buf =~ /^Content-Length:\s*(\d+)/mi;
        die "no Content-Length\n" unless defined $len;
        last if length($buf) >= $e + 4 + $len;
    }

    push @lat, (time - $t0) * 1e6;
    $bad++ unless $status == 200;
}

@lat = sort { $a <=> $b } @lat;

printf "requests=%d p50_us=%d p99_us=%d max_us=%d non200=%d\n",
    scalar @lat, $lat[int(@lat * 0.50)], $lat[int(@lat * 0.99)], $lat[-1],
    $bad;
