package AigwPort;

# Ports for what a suite starts besides its own server: an nginx of its
# own (AigwNginx), a redis-server (AigwRedis), $TEST_NGINX_RAND_PORT_<n>.
#
#   my $port = AigwPort::free_port();
#
# A port the kernel calls free (bind to port 0, close) may be taken by
# another run before the server binds it.  scripts/run-suite.sh gives
# each suite run the ports after its server port instead, as ctest
# gives each run a block of its own (AIGW_SUITE_PORT and the others,
# 20 apart): AIGW_TEST_PORTS="FROM-TO".  Within it, the ports not handed
# out yet come first, then the others again, the least recent first,
# each only if it binds now.
# Without AIGW_TEST_PORTS, or when none of the block binds, the kernel
# chooses.  Core Perl only.

use strict;
use warnings;

use IO::Socket::INET;

my %given;       # port => when it was handed out by this process
my $seq = 0;

sub range {
    my $r = $ENV{AIGW_TEST_PORTS} // return;
    my ($lo, $hi) = $r =~ /^(\d+)-(\d+)$/ or return;
    return if $lo < 1 || $hi > 65535 || $lo > $hi;
    return ($lo, $hi);
}

sub _binds {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => $port, ReuseAddr => 1)
        or return 0;
    close $s;
    return 1;
}

sub free_port {
    my ($lo, $hi) = range();

    if (defined $lo) {
        my @fresh = grep { !$given{$_} } $lo .. $hi;
        my @again = sort { $given{$a} <=> $given{$b} }
                    grep { $given{$_} } $lo .. $hi;

        for my $port (@fresh, @again) {
            next unless _binds($port);
            $given{$port} = ++$seq;
            return $port;
        }
    }

    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1',
                                  LocalPort => 0)
        or die "AigwPort: no free port: $!";
    return $s->sockport;
}

1;
