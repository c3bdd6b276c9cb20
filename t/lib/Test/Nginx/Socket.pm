package Test::Nginx::Socket;

# A small Test::Nginx::Socket-compatible runner (see Test::Nginx::Util
# and docs/testing.md).  Blocks are parsed by Test::Base exactly as for
# the real runner, which is a Test::Base subclass too; this module only
# avoids Spiffy's source filter by setting @ISA itself.

use strict;
use warnings;

use Digest::MD5 ();
use Digest::SHA ();
use Encode ();
use Errno qw( EAGAIN EINTR EWOULDBLOCK );
use IO::Socket::INET ();
use JSON::PP ();
use POSIX ();
use Test::Base ();
use Time::HiRes qw( sleep time );

use Test::Nginx::Util;

our $VERSION = '0.33';

our @ISA = ('Test::Base');

sub value_contains ($$);

our @EXPORT = qw( env_to_nginx is_str plan run_tests
    repeat_each config_preamble worker_connections
    master_process_enabled
    no_long_string workers master_on master_off
    log_level no_shuffle no_root_location
    server_name
    server_addr server_root html_dir server_port server_port_for_client
    timeout check_accum_error_log
    add_block_preprocessor bail_out add_test_cleanup_handler
    add_cleanup_handler add_response_body_check
);

# "plan" as Test::Base re-exports it (Test::More's, counted by Test::Base).
{
    no warnings 'once';
    *plan = \&Test::More::plan;
}

our @ResponseBodyChecks;

our $TotalConnectingTimeouts = 0;

# A hard cap on one request, as a multiple of its idle timeout: the real
# runner has none, so a server that trickles bytes could hold it forever.
our $TotalTimeoutFactor = 10;

$Test::Nginx::Util::RunTestHelper = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog = \&check_error_log;

sub add_response_body_check ($) {
    push @ResponseBodyChecks, shift;
}

sub set_http_config_filter ($) {
    $Test::Nginx::Util::FilterHttpConfig = shift;
}

# Requests

# "METHOD [URI [VERSION]]" then the body: the pieces and their sizes, so
# that the same edits can be applied to a request split into packets.
sub parse_request ($$) {
    my ($name, $raw) = @_;

    if (!defined $raw || $raw eq '') {
        bail_out("$name - Request line should be non-empty");
    }

    my ($first, $content) = $raw =~ /\A([^\n]*\n?)(.*)\z/s;

    if ($first !~ /^(\s*)(\S+)( *)((\S+)( *))?((\S+)( *))?(\s*)$/) {
        bail_out("$name - Request line is not valid. Should be 'meth [url "
                 . "[version]]' but got \"$first\".");
    }

    my %r = (
        method    => $2,
        pre_meth  => length $1,
        post_meth => length $3,
        url       => $5,
        post_url  => defined $6 ? length $6 : 0,
        ver       => $8,
        post_ver  => (defined $9 ? length $9 : 0) + length $10,
    );

    $r{url_size} = defined $r{url} ? length $r{url} : 0;
    $r{url} //= '/';
    $r{ver_size} = defined $r{ver} ? length $r{ver} : 0;
    $r{ver} //= 'HTTP/1.1';
    $r{content} = $content;
    $r{content_size} = length $content;

    return \%r;
}

# Each edit replaces "del" characters at the cursor by "new"; an edit
# that runs past the end of a packet goes on in the next one, which keeps
# the split of the request into packets.
sub apply_edits ($$) {
    my ($packets, $edits) = @_;

    my @in = @$packets;
    my @out;
    my $pkt = shift @in;
    my $pos = 0;

    for my $e (@$edits) {
        my ($del, $new) = @$e;

        while (1) {
            if (!defined $pkt) {
                if (@out) {
                    $out[-1] .= $new;
                } else {
                    push @out, $new;
                }
                last;
            }

            my $room = length($pkt) - $pos;

            if ($del <= $room) {
                substr($pkt, $pos, $del) = $new;
                $pos += length $new;
                last;
            }

            substr($pkt, $pos) = substr($new, 0, $room);
            $new = length($new) > $room ? substr($new, $room) : '';
            $del -= $room;
            push @out, $pkt if length $pkt;
            $pkt = shift @in;
            $pos = 0;
        }
    }

    push @out, $pkt if defined $pkt;
    push @out, @in;

    return \@out;
}

sub build_request_from_packets ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn_header, $packets) = @_;

    my $req = parse_request($name, join '', map { $_ // '' } @$packets);

    my $len_header = '';
    my $content = $req->{content};

    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $content =~ s/^\s+|\s+$//gs;
        $len_header = "Content-Length: " . length($content) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/gs;

    my $headers = '';

    if ($more_headers !~ /(?:^|\n)Host:/msi) {
        $headers .= "Host: $ServerName\r\n";
    }

    if ($more_headers !~ /(?:^|\n)Connection/msi) {
        $headers .= "Connection: $conn_header\r\n";
    }

    $headers .= "$more_headers$len_header\r\n";

    my @edits = (
        [$req->{pre_meth}, ''],
        [length $req->{method}, "$req->{method} "],
        [$req->{post_meth}, ''],
        [$req->{url_size}, "$req->{url} "],
        [$req->{post_url}, ''],
        [$req->{ver_size}, "$req->{ver}\r\n"],
        [$req->{post_ver}, ''],
        [0, $headers],
        [$req->{content_size}, $content],
    );

    return apply_edits([map { $_ // '' } @$packets], \@edits);
}

sub parse_more_headers ($) {
    my ($in) = @_;

    my ($out, $is_chunked) = ('', undef);

    for my $header (split /\n+/, $in) {
        next if $header =~ /^\s*\#/;

        my ($key, $val) = split /:\s*/, $header, 2;
        $val //= '';

        if (lc($key) eq 'transfer-encoding' && $val eq 'chunked') {
            $is_chunked = 1;
        }

        $out .= "$key: $val\r\n";
    }

    return ($out, $is_chunked);
}

sub _headers_for ($$$) {
    my ($name, $more_headers, $i) = @_;

    if (ref $more_headers eq 'ARRAY') {
        my $hdr = $more_headers->[$i];
        if (!defined $hdr) {
            bail_out("$name - --- more_headers lacks data for the request "
                     . "$i");
        }
        return parse_more_headers($hdr);
    }

    return parse_more_headers($more_headers);
}

# A list of requests, each a list of packets {value => ..., delay_before}.
sub get_req_from_block ($) {
    my ($block) = @_;

    my $name = $block->name;
    my @req_list;

    if (defined $block->raw_request) {
        my $raw = $block->raw_request;
        if (ref $raw eq 'ARRAY') {
            push @req_list, [map { {value => $_} } @$raw];
        } else {
            push @req_list, [{value => $raw}];
        }

        return \@req_list;
    }

    my $request;

    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request eval "
                         . "instead.");
        $request = eval $block->request_eval;
        warn $@ if $@;

    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            while ($request =~ s/^\s*\#[^\n]+\s+|^\s+//gs) {
                # leading comments and blank lines
            }
        }
    }

    my $more_headers = $block->more_headers // '';

    if ($block->pipelined_requests) {
        my $reqs = $block->pipelined_requests;
        if (ref $reqs ne 'ARRAY') {
            bail_out("$name - invalid entries in --- pipelined_requests");
        }

        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $r = expand_env_in_text($reqs->[$i], $name,
                                       $Test::Nginx::Util::RandPorts);
            my ($hdr, $chunked) = _headers_for($name, $more_headers, $i);
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= build_request_from_packets($name, $hdr, $chunked, $conn,
                                               [$r])->[0];
        }

        push @req_list, [{value => $all}];
        return \@req_list;
    }

    if (!ref $request) {
        my ($hdr, $chunked) = _headers_for($name, $more_headers, 0);
        my $pkts = build_request_from_packets($name, $hdr, $chunked, 'close',
                                              [$request]);
        push @req_list, [{value => $pkts->[0]}];
        return \@req_list;
    }

    if (ref $request ne 'ARRAY') {
        bail_out("$name - invalid ---request : MUST be string or array of "
                 . "requests");
    }

    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = _headers_for($name, $more_headers, $i);

        if (!ref $one) {
            my $pkts = build_request_from_packets($name, $hdr, $chunked,
                                                  'close', [$one]);
            push @req_list, [{value => $pkts->[0]}];
            next;
        }

        if (ref $one ne 'ARRAY') {
            bail_out("$name - Invalid syntax. $one should be a string or an "
                     . "array of packets.");
        }

        my @values;
        for my $p (@$one) {
            if (!ref $p) {
                push @values, $p;
            } elsif (ref $p eq 'HASH') {
                push @values, $p->{value};
            } else {
                bail_out("$name - Invalid syntax. $p should be a string or "
                         . "hash with value.");
            }
        }

        my $pkts = build_request_from_packets($name, $hdr, $chunked, 'close',
                                              \@values);
        my @bits;
        for my $j (0 .. $#$pkts) {
            my $orig = $one->[$j];
            push @bits, ref $orig eq 'HASH'
                        ? { %$orig, value => $pkts->[$j] }
                        : { value => $pkts->[$j] };
        }
        push @req_list, \@bits;
    }

    return \@req_list;
}


# The client: one connection a request, read to the end.

sub _connect ($$) {
    my ($block, $timeout) = @_;

    my $addr = $block->server_addr_for_client // $ServerAddr;
    my $deadline = time + $Test::Nginx::Util::ConnectWait;

    while (1) {
        my $sock = IO::Socket::INET->new(
            PeerAddr => $addr,
            PeerPort => $ServerPortForClient,
            Proto    => 'tcp',
            Timeout  => $timeout,
        );
        return ($sock) if $sock;

        my $err = "$!";

        if (!defined $Test::Nginx::Util::NginxPid
            || defined Test::Nginx::Util::nginx_exited())
        {
            my $st = $Test::Nginx::Util::NginxExitStatus;
            return (undef, "$err (nginx is not running"
                           . (defined $st ? ": it exited with "
                              . Test::Nginx::Util::_describe_status($st)
                              : '') . ")");
        }

        return (undef, $err) if time > $deadline;

        sleep 0.05;
    }
}

sub send_request ($$$$) {
    my ($bits, $middle_delay, $timeout, $block) = @_;

    my $name = $block->name;
    my @bits = @$bits;

    my $head_req = (join '', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/
                   ? 1 : 0;

    my ($sock, $err) = _connect($block, $timeout);

    if (!$sock) {
        my $msg = "$name - Can't connect to $ServerAddr:"
                  . "$ServerPortForClient: $err (aborted)";
        $TotalConnectingTimeouts++;
        Test::More::fail($msg);
        my $log = Test::Nginx::Util::read_file_text(
                      $Test::Nginx::Util::ErrLogFile);
        Test::More::diag("error.log (tail):\n"
                         . Test::Nginx::Util::tail_text($log, 15))
            if $log ne '';
        return (undef, $head_req);
    }

    $sock->blocking(0);

    my $fd = fileno $sock;
    my $resp = '';
    my $wbuf = (shift @bits)->{value} // '';
    my $woff = 0;
    my $writing = 1;
    my $hard_deadline = time + $timeout * $TotalTimeoutFactor;

    while (1) {
        my $rin = '';
        vec($rin, $fd, 1) = 1;
        my $win = $writing ? $rin : '';
        my $ein = $rin;

        my $wait = $timeout;
        my $left = $hard_deadline - time;
        $wait = $left if $left < $wait;
        $wait = 0 if $wait < 0;

        my ($rout, $wout, $eout) = ($rin, $win, $ein);
        my $n = select($rout, $writing ? $wout : undef, $eout, $wait);

        if ($n < 0) {
            next if $! == EINTR && time < $hard_deadline;
            warn "WARNING: $name - select failed: $!\n";
            last;
        }

        if ($n == 0) {
            close $sock;
            if (!defined $block->abort) {
                Test::More::fail("ERROR: client socket timed out - $name");
                Test::More::diag("after ${timeout}s idle; got "
                                 . length($resp) . " bytes so far");
            } else {
                sleep 0.005;
            }
            return ($resp, $head_req);
        }

        if ($writing && vec($wout, $fd, 1)) {
            while (1) {
                my $rest = length($wbuf) - $woff;

                if ($rest > 0) {
                    my $bytes = syswrite($sock, $wbuf, $rest, $woff);
                    if (!defined $bytes) {
                        last if $! == EAGAIN || $! == EWOULDBLOCK;
                        my $msg = "write failed: $!";
                        warn "$msg\n";
                        $resp = $msg if $resp eq '';
                        $writing = 0;
                        last;
                    }
                    $woff += $bytes;
                    next;
                }

                my $next = shift @bits;

                if (!defined $next) {
                    $writing = 0;

                    my $how = $block->shutdown;
                    if (defined $how) {
                        $how = 1 if $how =~ /^$/s;
                        shutdown($sock, $how);
                    }
                    last;
                }

                ($wbuf, $woff) = ($next->{value} // '', 0);

                my $delay = $next->{delay_before} // $middle_delay;
                sleep $delay if $delay;
            }
        }

        if (vec($rout, $fd, 1) || vec($eout, $fd, 1)) {
            my $done;
            while (1) {
                my $buf;
                my $bytes = sysread($sock, $buf, 4096);
                if (!defined $bytes) {
                    last if $! == EAGAIN || $! == EWOULDBLOCK;
                    warn "WARNING: $name - HTTP response read failure: $!\n";
                    $done = 1;
                    last;
                }
                if ($bytes == 0) {
                    $done = 1;
                    last;
                }
                $resp .= $buf;
            }
            last if $done;
        }
    }

    close $sock;
    return ($resp, $head_req);
}


# Responses

package Test::Nginx::Socket::Response;

sub new {
    my ($class, %args) = @_;
    return bless { headers => [], %args }, $class;
}

sub code {
    my $self = shift;
    $self->{code} = shift if @_;
    return $self->{code};
}

sub content {
    my $self = shift;
    $self->{content} = shift if @_;
    return $self->{content};
}

sub header {
    my ($self, $key) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $key }
            @{ $self->{headers} };
    return wantarray ? @v : (@v ? join(', ', @v) : undef);
}

# Status line, then header lines as HTTP::Message reads them.
sub parse {
    my ($class, $str) = @_;

    my $status_line;
    if (defined $str && $str =~ s/^(.*)\n//) {
        $status_line = $1;
    } else {
        ($status_line, $str) = ($str, '');
    }
    $status_line =~ s/\r\z// if defined $status_line;

    my @hdr;
    while (1) {
        if ($str =~ s/^([^\s:]+)[ \t]*: ?(.*)\n?//) {
            my ($k, $v) = ($1, $2);
            $v =~ s/\r\z//;
            push @hdr, [$k, $v];

        } elsif (@hdr && $str =~ s/^([ \t].*)\n?//) {
            my $more = $1;
            $more =~ s/\r\z//;
            $hdr[-1][1] .= "\n$more";

        } else {
            $str =~ s/^\r?\n//;
            last;
        }
    }

    my ($code, $message);
    if (defined $status_line) {
        if ($status_line =~ /^\d{3} /) {
            ($code, $message) = split ' ', $status_line, 2;
        } else {
            (undef, $code, $message) = split ' ', $status_line, 3;
        }
    }

    return $class->new(code => $code, message => $message,
                       headers => \@hdr, content => $str);
}

package Test::Nginx::Socket;

sub parse_response ($$$) {
    my ($name, $raw_resp, $head_req) = @_;

    my $left;
    my $raw_headers = '';

    if ($raw_resp =~ /(.*?\r\n)\r\n/s) {
        $raw_headers = $1;
    }

    my $res = Test::Nginx::Socket::Response->parse($raw_resp);

    my $code = $res->code;
    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = $res->header('Trailer');

    if ($code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }

    if ($code && ($code == 304 || $code == 101)) {
        return ($res, $raw_headers);
    }

    if (defined $enc && $enc eq 'chunked') {
        my $raw = $res->content // '';
        my $decoded = '';

        while (1) {
            if (!@trailers && $raw =~ /\G 0 [\ \t]* \r\n \r\n /gcsx) {
                $left = $1 if $raw =~ /\G (.+) /gcsx;
                last;

            } elsif (@trailers && $raw =~ /\G 0 [\ \t]* \r\n /gcsx) {
                for my $t (@trailers) {
                    if ($raw !~ /\G(\Q$t\E:\ [^\n]*\r\n)/gcs) {
                        Test::More::fail("$name - invalid trailer data "
                                         . "received (expected $t).");
                        return;
                    }
                }
                if ($raw !~ /\G\r\n/gcs) {
                    Test::More::fail("$name - invalid chunked data "
                                     . "received (expected CRLF).");
                    return;
                }
                $left = $1 if $raw =~ /\G (.+) /gcsx;
                last;
            }

            if ($raw =~ /\G [\ \t]* ([A-Fa-f0-9]+) [\ \t]* \r\n /gcsx) {
                my $size = hex $1;
                my $start = pos $raw;

                if (length($raw) - $start < $size) {
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(not enought octets for the data "
                                     . "section)");
                    return;
                }

                $decoded .= substr($raw, $start, $size);
                pos($raw) = $start + $size;

                if ($raw !~ /\G\r\n/gcs) {
                    Test::More::fail("$name - invalid chunked data "
                                     . "received (expected CRLF).");
                    return;
                }

            } elsif ($raw =~ /\G.+/gcs) {
                Test::More::fail("$name - invalid chunked body received: "
                                 . Test::Nginx::Util::_excerpt($&, 0));
                return;

            } else {
                Test::More::fail("$name - no last chunk found - "
                                 . Test::Nginx::Util::_excerpt($raw, 0));
                return;
            }
        }

        $res->content($decoded);

    } elsif (defined $len && $len ne '' && $len =~ /^\d+$/) {
        my $raw = $res->content;

        if (length $raw < $len) {
            if (!$head_req) {
                warn "WARNING: $name - response body truncated: $len "
                     . "expected, but got ", length $raw, "\n";
            }

        } elsif (length $raw > $len) {
            $left = substr $raw, $len;
            $res->content(substr $raw, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}


# Checks

sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;

    if ($need_array) {
        if (ref $value && ref $value eq 'ARRAY') {
            return $value->[$req_idx];
        }

        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }

    if (ref $value && ref $value eq 'ARRAY') {
        return $value->[0];
    }

    return $value;
}

sub check_error_code ($$$$$) {
    my ($block, $res, $dry_run, $req_idx, $need_array) = @_;

    my $name = $block->name;
    my $got = ($res && $res->code) || '';

    SKIP: {
        Test::More::skip("$name - tests skipped due to $dry_run", 1)
            if $dry_run;

        if (defined $block->error_code_like) {
            my $val = get_indexed_value($name, $block->error_code_like,
                                        $req_idx, $need_array);
            Test::More::like($got, qr/$val/sm, "$name - status code ok");

        } elsif (defined $block->error_code) {
            Test::More::is($got, get_indexed_value($name, $block->error_code,
                                                   $req_idx, $need_array),
                           "$name - status code ok");

        } else {
            Test::More::is($got, 200, "$name - status code ok");
        }
    }
}

sub check_raw_response_headers ($$$$$) {
    my ($block, $raw_headers, $dry_run, $req_idx, $need_array) = @_;

    my $name = $block->name;

    for my $type (qw( like unlike )) {
        my $spec = $type eq 'like' ? $block->raw_response_headers_like
                                   : $block->raw_response_headers_unlike;
        next if !defined $spec;

        SKIP: {
            Test::More::skip("$name - raw_response_headers_$type - tests "
                             . "skipped due to $dry_run", 1) if $dry_run;

            my $exp = get_indexed_value($name, $spec, $req_idx, $need_array);
            if ($type eq 'like') {
                Test::More::like($raw_headers, qr/$exp/s,
                                 "$name - raw resp headers like");
            } else {
                Test::More::unlike($raw_headers, qr/$exp/s,
                                   "$name - raw resp headers unlike");
            }
        }
    }
}

sub check_response_headers ($$$$$$) {
    my ($block, $res, $raw_headers, $dry_run, $req_idx, $need_array) = @_;

    my $name = $block->name;

    if (defined $block->response_headers) {
        my $headers = parse_headers(get_indexed_value($name,
                                        $block->response_headers,
                                        $req_idx, $need_array));

        for my $key (sort keys %$headers) {
            my $val = $headers->{$key};

            SKIP: {
                Test::More::skip("$name - response_headers - tests skipped "
                                 . "due to $dry_run", 1) if $dry_run;

                if (!defined $val) {
                    Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/ms,
                        "$name - header $key not present in the raw "
                        . "headers");
                    next;
                }

                $val =~ s/\$ServerPort\b/$ServerPort/g;
                $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;

                my $got = $res ? $res->header($key) : undef;
                Test::More::is($got // '', $val, "$name - header $key ok");
            }
        }

    } elsif (defined $block->response_headers_like) {
        my $headers = parse_headers(get_indexed_value($name,
                                        $block->response_headers_like,
                                        $req_idx, $need_array));

        for my $key (sort keys %$headers) {
            my $val = $headers->{$key} // '';
            my $got = ($res ? $res->header($key) : undef) // '';

            SKIP: {
                Test::More::skip("$name - response_headers_like - tests "
                                 . "skipped due to $dry_run", 1) if $dry_run;
                Test::More::like($got, qr/^$val$/,
                                 "$name - header $key like ok");
            }
        }
    }
}

sub run_filter_helper ($$$) {
    my ($block, $filter, $content) = @_;

    my $name = $block->name;

    if (ref $filter eq 'CODE') {
        return $filter->($content);
    }

    if (ref $filter) {
        bail_out("$name - the --- response_body_filters section only "
                 . "supports subroutine reference values and string values");
    }

    my %f = (
        md5_hex  => sub { Digest::MD5::md5_hex($_[0]) },
        sha1_hex => sub { Digest::SHA::sha1_hex($_[0]) },
        uc       => sub { uc $_[0] },
        lc       => sub { lc $_[0] },
        ucfirst  => sub { ucfirst $_[0] },
        lcfirst  => sub { lcfirst $_[0] },
        length   => sub { length $_[0] },
    );

    if (!$f{$filter}) {
        bail_out("$name - unknown filter, \"$filter\", specified in the --- "
                 . "response_body_filters section");
    }

    return $f{$filter}->($content);
}

sub transform_response_body ($$$) {
    my ($block, $res, $req_idx) = @_;

    return if !defined $res;

    my $content = $res->content;
    my $filters = $block->response_body_filters;

    return if !defined $content || !defined $filters;

    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];

    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }

    my $filter = $filters;
    if (ref $filters->[0] eq 'ARRAY') {
        $filter = $filters->[$req_idx];
        bail_out("$name - the ---response_body_filters two-dimensional "
                 . "array unmatch the specified request($req_idx)")
            if !defined $filter;
    }

    $filter = [$filter] if ref $filter ne 'ARRAY';

    for my $f (@$filter) {
        $content = run_filter_helper($block, $f, $content);
    }

    $res->content($content);
}

sub check_response_body ($$$$$$) {
    my ($block, $res, $dry_run, $req_idx, $repeated_req_idx, $need_array)
        = @_;

    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined(my $file = $block->write_resp_body_file) && $res) {
        open my $out, '>', $file
            or bail_out("$name - failed to write to file '$file': $!");
        print $out $content // '';
        close $out;
    }

    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }

    my $which = "(repeated req $repeated_req_idx, req $req_idx)";

    if (defined $block->response_body
        || defined $block->response_body_eval)
    {
        if (defined $block->response_body_json_sort && defined $content) {
            my $js = JSON::PP->new->canonical(1);
            my $obj;
            if (eval { $obj = $js->loose(1)->decode($content); 1 }) {
                $content = $js->encode($obj) . "\n";
            }
        }

        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. Use "
                             . "response_body eval instead.");
            $expected = eval get_indexed_value($name,
                                               $block->response_body_eval,
                                               $req_idx, $need_array);
            warn $@ if $@;

        } else {
            $expected = get_indexed_value($name, $block->response_body,
                                          $req_idx, $need_array);
        }

        if ($block->charset) {
            Encode::from_to($expected, 'UTF-8', $block->charset);
        }

        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected = expand_env_in_text($expected, $name,
                                           $Test::Nginx::Util::RandPorts);
        }

        SKIP: {
            Test::More::skip("$name - response_body - tests skipped due to "
                             . "$dry_run", 1) if $dry_run;

            if (ref $expected) {
                Test::More::like($content, $expected,
                                 "$name - response_body - like $which");
            } else {
                is_str($content, $expected,
                       "$name - response_body - response is expected "
                       . $which);
            }
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $pats = $type eq 'like' ? $block->response_body_like
                                   : $block->response_body_unlike;

        my $pat = get_indexed_value($name, $pats, $req_idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;

        my $summary = trim($content) // '';
        $summary = substr($summary, 0, 200) . '...' if length $summary > 200;

        SKIP: {
            Test::More::skip("$name - response_body_$type - tests skipped "
                             . "due to $dry_run", 1) if $dry_run;

            my $desc = "$name - response_body_$type - response is expected "
                       . "($summary)";
            if ($type eq 'like') {
                Test::More::like($content, qr/$pat/s, $desc);
            } else {
                Test::More::unlike($content, qr/$pat/s, $desc);
            }
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $req_idx,
                 $repeated_req_idx, $dry_run);
    }
}

sub value_contains ($$) {
    my ($val, $pat) = @_;

    if (!ref $val || ref $val eq 'Regexp') {
        return $val =~ /\Q$pat\E/;
    }

    if (ref $val eq 'ARRAY') {
        for my $v (@$val) {
            return 1 if value_contains($v, $pat);
        }
    }

    return undef;
}

sub fmt_str ($) {
    my $str = shift;
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    return $str;
}

sub _pattern_list ($) {
    my $pats = shift;

    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }

    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub _line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : $line =~ /\Q$pat\E/;
}

sub _log_summary ($) {
    my $lines = shift;
    my @interesting = grep { m{^\d{4}/\d\d/\d\d [\d:]+ \[(?!debug\])} }
                      @{ $lines || [] };
    @interesting = @interesting[-8 .. -1] if @interesting > 8;
    return "the new error.log lines (" . scalar(@{ $lines || [] })
           . " in all) have no such line; the last non-debug ones:\n"
           . join('', map { "    $_" } @interesting);
}

# Patterns must (or must not) appear in the error.log lines written since
# the previous check.
sub _check_log_patterns ($$$$$$) {
    my ($block, $what, $pats, $lines, $dry_run, $rep) = @_;

    my $name = $block->name;
    my $file = $what =~ /access/ ? 'access.log' : 'error.log';
    my $neg = $what =~ /^no_/;

    $pats = _pattern_list($pats);

    if (!$neg) {
        for my $line (@{ $lines || [] }) {
            for my $pat (@$pats) {
                next if !defined $pat;
                if (_line_matches($line, $pat)) {
                    SKIP: {
                        Test::More::skip("$name - $what - tests skipped due "
                                         . "to $dry_run", 1) if $dry_run;
                        Test::More::pass("$name - pattern \"$pat\" matches "
                                         . "a line in $file (req $rep)");
                    }
                    undef $pat;
                }
            }
        }

        for my $pat (@$pats) {
            next if !defined $pat;
            SKIP: {
                Test::More::skip("$name - $what - tests skipped due to "
                                 . "$dry_run", 1) if $dry_run;
                Test::More::fail("$name - pattern \"$pat\" should match a "
                                 . "line in $file (req $rep)");
                Test::More::diag(_log_summary($lines))
                    if $file eq 'error.log';
            }
        }

        return;
    }

    my %found;
    my $i = 0;
    for my $line (@{ $lines || [] }) {
        for my $pat (@$pats) {
            next if !defined $pat;
            next if !_line_matches($line, $pat);

            $found{$pat}++;

            SKIP: {
                Test::More::skip("$name - $what - tests skipped due to "
                                 . "$dry_run ($line)", 1) if $dry_run;
                my $more = '';
                for (my $j = $i + 1; $j < $i + 10 && $j < $#$lines; $j++) {
                    $more .= $lines->[$j];
                }
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                                 . "\" should not match any line in $file "
                                 . "but matches line \"" . fmt_str($line)
                                 . "\" (req $rep)\n$more");
            }
        }
    } continue {
        $i++;
    }

    for my $pat (@$pats) {
        next if !defined $pat || $found{$pat};
        SKIP: {
            Test::More::skip("$name - $what - tests skipped due to "
                             . "$dry_run", 1) if $dry_run;
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in $file "
                             . "(req $rep)");
        }
    }
}

# A code ref for error_log_data() / access_log_data(): true when every
# pattern of $pats (those a line must match) matches a line.
sub _log_has_all ($) {
    my $pats = shift;
    return undef if !defined $pats;
    my @want = grep { defined } @{ _pattern_list($pats) };
    return undef if !@want;
    return sub {
        my $lines = shift;
        for my $pat (@want) {
            return 0 if !grep { _line_matches($_, $pat) } @$lines;
        }
        return 1;
    };
}

sub check_access_log ($$$) {
    my ($block, $dry_run, $rep) = @_;

    my $lines;
    my $want = _log_has_all($block->access_log);

    for my $what (qw( access_log no_access_log )) {
        my $pats = $what eq 'access_log' ? $block->access_log
                                         : $block->no_access_log;
        next if !defined $pats;
        $lines ||= access_log_data($want);
        _check_log_patterns($block, $what, $pats, $lines, $dry_run, $rep);
    }
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $rep, $need_array) = @_;

    my $name = $block->name;
    my $lines;
    my %warn_level = (alert => 1, crit => 1, emerg => 1);
    my $want = _log_has_all($block->error_log);

    my $grep_pat;
    my $grep_pats = $block->grep_error_log;

    if (defined $grep_pats) {
        $grep_pat = ref $grep_pats eq 'ARRAY' ? $grep_pats->[$rep]
                                              : $grep_pats;

    } elsif (defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- "
                 . "grep_error_log_out is defined");
    }

    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        if (!defined $expected) {
            bail_out("$name - No --- grep_error_log_out defined but --- "
                     . "grep_error_log is defined");
        }

        $expected = expand_env_in_text($expected, $name,
                                       $Test::Nginx::Util::RandPorts);

        if (ref $expected eq 'ARRAY') {
            $expected = $expected->[$rep];
        }

        SKIP: {
            Test::More::skip("$name - error_log - tests skipped due to "
                             . "$dry_run", 1) if $dry_run;

            $lines ||= error_log_data($want);

            my $matched = '';
            for my $line (@{ $lines || [] }) {
                my $m;
                if (ref $grep_pat) {
                    $m = $& if $line =~ /$grep_pat/;
                } else {
                    $m = $& if $line =~ /\Q$grep_pat\E/;
                }
                $matched .= "$m\n" if defined $m && $m !~ /\n/;
            }

            my $desc = "$name - grep_error_log_out (req $rep)";
            if (ref $expected eq 'Regexp') {
                Test::More::like($matched, $expected, $desc);
            } else {
                is_str($matched, $expected, $desc);
            }
        }
    }

    for my $what (qw( error_log no_error_log )) {
        my $pats = $what eq 'error_log' ? $block->error_log
                                        : $block->no_error_log;
        next if !defined $pats;

        for my $lvl (keys %warn_level) {
            delete $warn_level{$lvl} if value_contains($pats, "[$lvl");
        }

        $lines ||= error_log_data($want);
        _check_log_patterns($block, $what, $pats, $lines, $dry_run, $rep);
    }

    return if $dry_run;

    $lines ||= error_log_data($want);

    for my $line (@{ $lines || [] }) {
        for my $lvl (sort keys %warn_level) {
            if ($line =~ /\[$lvl\]/) {
                warn "WARNING: $name - ", fmt_str($line), "\n";
            }
        }

        if ($line =~ /\bAssertion .*?failed\b/) {
            my $l = $line;
            chomp $l;
            Test::More::fail("$name - $l\n");
        }
    }
}


# One repetition of a block

sub run_test_helper ($$$) {
    my ($block, $dry_run, $rep) = @_;

    my $name = $block->name;

    my $req_list = get_req_from_block($block);

    if (!@$req_list) {
        bail_out("$name - request empty");
    }

    my $timeout = parse_time($block->timeout) // timeout();

    my ($res, $n, $need_array);
    my $req_idx = 0;

    for my $one_req (@$req_list) {
        my ($raw_resp, $head_req);

        if ($dry_run) {
            $raw_resp = "200 OK HTTP/1.0\r\nContent-Length: 0\r\n\r\n";

        } else {
            ($raw_resp, $head_req) = send_request($one_req,
                                         $block->raw_request_middle_delay,
                                         $timeout, $block);

            # every answer of the run, for the secrets check of
            # run-suite.sh, after its request line
            if ($ENV{AIGW_SECRETS_DIR}
                && open my $rec, '>>', "$ENV{AIGW_SECRETS_DIR}/responses.$$")
            {
                my ($line) = (join '', map { $_->{value} } @$one_req)
                             =~ /^\s*([^\r\n]*)/;
                print $rec "=== $name\n>>> $line\n", $raw_resp // '', "\n";
                close $rec;
            }
        }

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;

        } else {
            $need_array = @$req_list > 1;
        }

        while (1) {
            $raw_resp //= '';

            my ($raw_headers, $left);

            if (!defined $block->ignore_response) {
                ($res, $raw_headers, $left) = parse_response($name,
                                                   $raw_resp, $head_req);
            }

            if (!$n) {
                if (defined $left && $left ne '') {
                    (my $l = $left) =~ s/([\0-\037\200-\377])/
                                         sprintf('\x{%02x}', ord $1)/ge;
                    warn "WARNING: $name - unexpected extra bytes after "
                         . "last chunk in response: \"$l\"\n";
                }

            } else {
                $raw_resp = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $dry_run, $req_idx,
                                 $need_array);
                check_raw_response_headers($block, $raw_headers // '',
                                           $dry_run, $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers // '',
                                       $dry_run, $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $dry_run, $req_idx, $rep,
                                    $need_array);
            }

            if ($n || $req_idx < @$req_list - 1) {
                sleep $block->wait if $block->wait;

                check_error_log($block, $res, $dry_run, $rep, $need_array);

                if (!defined $block->ignore_response) {
                    check_access_log($block, $dry_run, $rep);
                }
            }

            $req_idx++;

            last if !$n;
        }
    }

    sleep $block->wait if $block->wait;

    check_error_log($block, $res, $dry_run, $rep, $need_array);

    if (!defined $block->ignore_response) {
        check_access_log($block, $dry_run, $rep);
    }
}

1;
