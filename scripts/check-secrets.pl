#!/usr/bin/env perl
#
# The secrets check of a suite run (scripts/run-suite.sh): no key the
# suites use (t/data/secrets.txt) may show in any log line, any answer
# nginx gave, any metric, or any request a provider got, but a provider's
# key in the requests to that provider.
#
#   check-secrets.pl SECRETS-FILE RECORD-DIR [LOG...]
#
# RECORD-DIR holds what the run recorded (AIGW_SECRETS_DIR): responses.*
# (every answer, after its request line), logs.* (every log a block or
# suite wrote), mock.*.jsonl (every request the mock provider got).  The
# LOGs (the run's error logs) are read too.  Exits 1 with every hit.
#
# Not counted, being nginx's own and not aigw's: [debug] lines of nginx's
# core that dump a client's header lines ("http header:"), and nginx's
# "client sent duplicate header line" (both written before any module
# runs; production logs are not at debug level, and the second names a
# header a client sent twice); the proxy module's [debug] dump of the
# request it sends ("http proxy header:", continued on the lines after)
# with a provider's key, where an nginx of a suite stands in for a
# provider (060-tls.t).  Answers to /_mock/ requests are the mock's own
# introspection, not nginx's.

use strict;
use warnings;

my ($list, $dir, @logs) = @ARGV;
die "usage: check-secrets.pl SECRETS-FILE RECORD-DIR [LOG...]\n"
    unless defined $dir;

my (%class, @secrets);
open my $fh, '<', $list or die "check-secrets: $list: $!\n";
while (<$fh>) {
    next if /^\s*(#|$)/;
    my ($class, $secret) = /^(provider|client)\s+(\S+)\s*$/
        or die "check-secrets: $list:$.: not \"provider|client SECRET\"\n";
    $class{$secret} = $class;
    push @secrets, $secret;
}
close $fh;

my $any = join '|', map { quotemeta } sort { length $b <=> length $a }
                                       @secrets;
my $re = qr/($any)/;

my ($hits, $read) = (0, 0);

sub hit {
    my ($where, $secret, $line) = @_;
    $hits++;
    return if $hits > 20;
    $line =~ s/[\r\n]+$//;
    $line = substr($line, 0, 300) . '...' if length $line > 300;
    print STDERR "check-secrets: $class{$secret} key \"$secret\" in"
        . " $where:\n    $line\n";
}

# the first line of a log entry (the one with the time) tells
sub nginx_own {
    my ($entry, $secret) = @_;
    return $entry =~ /\[debug\] .* http header: "/
        || $entry =~ /\[info\] .* client sent duplicate header line: /
        || ($entry =~ /\[debug\] .* http proxy header:/
            && $class{$secret} eq 'provider');
}

# logs: every line
for my $f (@logs, glob("$dir/logs.*")) {
    open my $in, '<', $f or next;
    $read++;
    my $entry = '';
    while (my $line = <$in>) {
        $entry = $line if $line =~ m{^(\d{4}/\d\d/\d\d |=== )};
        next unless $line =~ $re;
        next if nginx_own($entry, $1);
        hit("$f:$.", $1, $line);
    }
}

# answers: all but the mock's introspection through nginx
for my $f (glob "$dir/responses.*") {
    open my $in, '<', $f or next;
    $read++;
    my ($req, $skip) = ('', 0);
    while (my $line = <$in>) {
        if ($line =~ /^>>> (.*)/) {
            $req = $1;
            $skip = $req =~ m{^\S+ /_mock/};
            next;
        }
        next if $skip || $line !~ $re;
        hit("the answer to \"$req\" ($f:$.)", $1, $line);
    }
}

# provider requests: a provider key is its own provider's credential
for my $f (glob "$dir/mock.*.jsonl") {
    open my $in, '<', $f or next;
    $read++;
    while (my $line = <$in>) {
        while ($line =~ /$re/g) {
            next if $class{$1} eq 'provider';
            hit("a provider request ($f:$.)", $1, $line);
        }
    }
}

if ($hits) {
    print STDERR "check-secrets: ... and ", $hits - 20, " more\n"
        if $hits > 20;
    print STDERR "check-secrets: FAIL: $hits secret(s) leaked\n";
    exit 1;
}

print "check-secrets: no secret in $read recorded file(s)\n";
exit 0;
