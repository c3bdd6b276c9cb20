package AigwDns;

# A tiny DNS responder for the resolver suites, in a forked child:
#
#   my $dns = AigwDns->new("$dir/dns");   # the answer file
#   $dns->answer('127.0.0.1 127.0.0.2');  # A records for every name
#   $dns->answer('servfail');             # SERVFAIL to every query
#   $dns->answer('drop');                 # no answer at all
#   $dns->port                            # UDP, on 127.0.0.1
#   $dns->queries                         # queries got so far
#
# The file is read at each query.  A records carry a TTL of 1 second;
# other types (AAAA) get an empty answer.  The child exits with its
# parent (it checks getppid every half second), or when the object goes.
# Loopback only; core Perl only.

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use POSIX ();

sub new {
    my ($class, $file) = @_;

    my $sock = IO::Socket::INET->new(Proto => 'udp',
                                     LocalAddr => '127.0.0.1',
                                     LocalPort => 0)
        or die "AigwDns: no UDP socket: $!";

    my $self = bless { file => $file, port => $sock->sockport,
                       owner => $$ }, $class;

    $self->answer('drop');
    open my $q, '>', "$file.count" or die "AigwDns: $file.count: $!";
    close $q;

    my $parent = $$;
    my $pid = fork;
    die "AigwDns: fork: $!" unless defined $pid;

    if ($pid == 0) {
        _serve($sock, $file, $parent);
        POSIX::_exit(0);
    }

    close $sock;
    $self->{pid} = $pid;

    return $self;
}

sub port { $_[0]{port} }

sub answer {
    my ($self, $text) = @_;
    my $tmp = "$self->{file}.tmp";
    open my $fh, '>', $tmp or die "AigwDns: $tmp: $!";
    print $fh "$text\n";
    close $fh;
    rename $tmp, $self->{file} or die "AigwDns: rename: $!";
}

sub queries {
    my ($self) = @_;
    return -s "$self->{file}.count" || 0;
}

sub _serve {
    my ($sock, $file, $parent) = @_;
    my $sel = IO::Select->new($sock);

    # bounded: at most an hour, and never past the parent
    for (1 .. 7200) {
        last if getppid() != $parent;
        next unless $sel->can_read(0.5);

        my $from = $sock->recv(my $q, 512);
        next unless defined $from && length $q > 12;

        my ($id, $flags, $qd) = unpack 'n n n', $q;
        next if $qd != 1;

        # the question: labels up to a zero byte, then type and class
        my $i = 12;
        while ($i < length $q) {
            my $l = ord substr $q, $i, 1;
            $i += 1 + $l;
            last if $l == 0;
        }
        next if $i + 4 > length $q;
        my $question = substr $q, 12, $i + 4 - 12;
        my $type = unpack 'n', substr $q, $i, 2;

        open my $fh, '<', $file or next;
        my $text = <$fh> // '';
        close $fh;
        $text =~ s/\s+$//;

        if (open my $c, '>>', "$file.count") { print $c '.'; close $c }

        next if $text eq 'drop';

        my ($rcode, @ips) = (0);
        if ($text eq 'servfail') {
            $rcode = 2;
        } elsif ($type == 1) {
            @ips = split ' ', $text;
        }

        my $r = pack('n n n n n n', $id, 0x8180 | $rcode, 1, scalar @ips,
                     0, 0) . $question;
        for my $ip (@ips) {
            $r .= pack('n n n N n', 0xc00c, 1, 1, 1, 4)
                  . pack('C4', split /\./, $ip);
        }

        $sock->send($r, 0, $from);
    }
}

sub DESTROY {
    my ($self) = @_;
    return unless $self->{pid} && $self->{owner} == $$;
    local $?;
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    $self->{pid} = 0;
}

1;
