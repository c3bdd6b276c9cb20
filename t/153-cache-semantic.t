# The semantic cache: after an exact miss, the last user message is
# embedded (the mock's deterministic embedder, /v1/embeddings with a
# "semantic" model) and a near enough stored answer is replayed,
# X-AIGW-Cache: SEMANTIC_HIT.  Paraphrases hit; negations, other numbers
# and other entities do not; no hit crosses tenants, system prompts,
# models, tools or earlier turns; a request may raise the threshold,
# never lower it; long conversations are not looked up; the embedder
# down, slow or wrong costs the request nothing but the wait; a stream
# replay of a JSON answer parses as SSE; a full partition drops its
# oldest vectors without an error.  Two workers, four clients: one
# partition scanned (a block at a time) while it grows, wraps and is
# evicted, and a zone full of vectors still stores exact answers.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwFixture;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use POSIX ();

my $ngx = suite_nginx();
my $dir = $ngx->dir;
my $port = $ngx->port;
my $mock = mock_port();

$ngx->write_keys(
    { id => 'k_sem_acme', tenant => 'acme', key => 'sk-sem-acme' },
    { id => 'k_sem_umbrella', tenant => 'umbrella',
      key => 'sk-sem-umbrella' });

$ngx->write_http(<<"EOC", single => 1, connections => 64, access_log => 0);
    log_format c '\$uri \$aigw_cache_status \$status';
    access_log $dir/logs/access.log c;
    aigw_keys keys.json;
    aigw_cache_zone cache:4m;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_provider claude http://127.0.0.1:$mock/v1 format=anthropic;
    aigw_model gpt-4o ok:gpt-4o;
    aigw_model gpt-4o-mini ok:gpt-4o-mini;
    aigw_model claude-3-5-haiku claude:claude-3-5-haiku;
    server {
        listen 127.0.0.1:$port;
        aigw_cache on;
        aigw_cache_semantic /_embed;
        aigw_cache_semantic_model mock-semantic;
        aigw_cache_semantic_turns 2;
        location /v1/ {
            aigw_pass;
        }
        location /strict/v1/ {
            aigw_cache_namespace strict;
            aigw_cache_semantic_threshold 0.995;
            aigw_pass;
        }
        location /one/v1/ {
            aigw_cache_semantic_turns 1;
            aigw_pass;
        }
        location /small/v1/ {
            aigw_cache_namespace small;
            aigw_cache_semantic_partition 3;
            aigw_pass;
        }
        location /big/v1/ {
            aigw_cache_namespace big;
            aigw_cache_semantic_model mock-semantic-3072;
            error_log $dir/logs/big.log debug;
            aigw_pass;
        }
        location /int8/v1/ {
            aigw_cache_namespace int8;
            aigw_cache_semantic_precision int8;
            aigw_pass;
        }
        location /off/v1/ {
            aigw_cache_namespace off;
            aigw_cache_semantic off;
            aigw_pass;
        }
        location /down/v1/ {
            aigw_cache_namespace down;
            aigw_cache_semantic /_embed_down;
            aigw_pass;
        }
        location /slow/v1/ {
            aigw_cache_namespace slow;
            aigw_cache_semantic /_embed_slow;
            aigw_pass;
        }
        location /bad/v1/ {
            aigw_cache_namespace bad;
            aigw_cache_semantic /_embed_bad;
            aigw_pass;
        }
@{[ embed_location('/_embed', "http://127.0.0.1:$mock/v1/embeddings") ]}
@{[ embed_location('/_embed_down',
                   "http://127.0.0.1:$mock/fault/status=500/v1/embeddings") ]}
@{[ embed_location('/_embed_slow',
                   "http://127.0.0.1:$mock/fault/delay=3000/v1/embeddings",
                   'proxy_read_timeout 300ms;') ]}
@{[ embed_location('/_embed_bad',
                   "http://127.0.0.1:$mock/fault/notjson/v1/embeddings") ]}
        location = /metrics {
            aigw_metrics;
        }
    }
EOC

ok($ngx->start, 'nginx starts') or BAIL_OUT($ngx->start_error);

sub msgs {
    my (@m) = @_;
    my @out;
    while (@m) {
        my ($role, $text) = splice @m, 0, 2;
        push @out, { role => $role, content => $text };
    }
    return \@out;
}

# a chat request: the last user text, and what else the body holds
sub ask {
    my ($path, $text, %o) = @_;
    my $body = { model => $o{model} // 'gpt-4o',
                 messages => $o{messages}
                             // msgs(@{ $o{before} // [] }, user => $text) };
    $body->{tools} = $o{tools} if $o{tools};
    $body->{stream} = JSON::PP::true if $o{stream};
    my %h = (Authorization => 'Bearer ' . ($o{key} // 'sk-sem-acme'),
             'Content-Type' => 'application/json', %{ $o{headers} // {} });
    my $res = $ngx->request('POST', $path // '/v1/chat/completions', \%h,
                            JSON::PP->new->canonical->encode($body));
    ($res->{cache}) = $res->{headers} =~ /^X-AIGW-Cache:\s*(\S+)/mi;
    $res->{cache} //= '';
    $res->{json} = eval { decode_json($res->{body}) } // {};
    $res->{content} = $res->{json}{choices}[0]{message}{content} // '';
    return $res;
}

my $chat = '/v1/chat/completions';

# a paraphrase hits, the answer of the first question

my $a = ask($chat, 'What is the capital of France?');
is($a->{status}, 200, 'first question answered');
is($a->{cache}, 'MISS', 'first question: MISS');
isnt($a->{content}, '', 'first question: an answer');

my $b = ask($chat, 'Tell me the capital of France.');
is($b->{cache}, 'SEMANTIC_HIT', 'a paraphrase: SEMANTIC_HIT');
is($b->{content}, $a->{content}, 'a paraphrase: the stored answer');
like($b->{headers}, qr/^Age: \d+/mi, 'a semantic hit has an Age');

is(ask($chat, 'what is actually the capital of france')->{cache},
   'SEMANTIC_HIT', 'a paraphrase with a soft word (0.986): SEMANTIC_HIT');

# hard negatives: a negation, another entity, another number

for my $q ('What is not the capital of France?',
           'What is the capital of Germany?')
{
    my $r = ask($chat, $q);
    is($r->{cache}, 'MISS', "hard negative \"$q\": MISS");
    isnt($r->{content}, $a->{content}, "hard negative \"$q\": its own answer");
}

is(ask($chat, 'How many km is 5 miles?')->{cache}, 'MISS', 'numbers: stored');
is(ask($chat, 'How many kilometres is 5 miles?')->{cache}, 'SEMANTIC_HIT',
   'numbers: a paraphrase hits');
is(ask($chat, 'How many km is 7 miles?')->{cache}, 'MISS',
   'numbers: another number misses');

# no hit across tenants, system prompts, models, tools, earlier turns

is(ask($chat, 'Tell me the capital of France.', key => 'sk-sem-umbrella')
   ->{cache}, 'MISS', 'another tenant: MISS');
is(ask($chat, 'Tell me the capital of France.', messages => msgs(
       system => 'Answer in verse.', user => 'Tell me the capital of France.'))
   ->{cache}, 'MISS', 'another system prompt: MISS');
is(ask($chat, 'Tell me the capital of France.', model => 'gpt-4o-mini')
   ->{cache}, 'MISS', 'another model: MISS');
is(ask($chat, 'Tell me the capital of France.', tools => [
       { type => 'function', function => { name => 'atlas',
         parameters => { type => 'object', properties => {} } } } ])
   ->{cache}, 'MISS', 'tools: MISS');

my @before = (user => 'I am planning a trip.', assistant => 'Nice!');
my $t = ask($chat, 'Which is the largest city in Japan?', before => \@before);
is($t->{cache}, 'MISS', 'two turns: stored');
is(ask($chat, 'What is the biggest city in Japan?', before => \@before)
   ->{cache}, 'SEMANTIC_HIT', 'two turns, same earlier turns: SEMANTIC_HIT');
is(ask($chat, 'What is the biggest city in Japan?',
       before => [ user => 'I am planning a move.', assistant => 'Nice!' ])
   ->{cache}, 'MISS', 'other earlier turns: MISS');
is(ask($chat, 'What is the biggest city in Japan?')->{cache}, 'MISS',
   'no earlier turns: MISS');

# the turns limit: two user turns are not looked up at 1

is(ask('/one/v1/chat/completions', 'What is the biggest city in Japan?',
       before => \@before)->{cache}, 'MISS',
   'aigw_cache_semantic_turns 1: a two-turn paraphrase is not looked up');

# the last message is not the user's: not looked up

is(ask($chat, undef, messages => msgs(
       user => 'Tell me the capital of France.', assistant => 'Paris'))
   ->{cache}, 'MISS', 'the last message an assistant\'s: MISS');

# a request raises the threshold, never lowers it

is(ask($chat, 'Is it safe to swim after eating?')->{cache}, 'MISS',
   'threshold: stored');
is(ask($chat, 'Is it safe to swim after eating, really?',
       headers => { 'X-AIGW-Cache-Threshold' => '0.999' })->{cache}, 'MISS',
   'threshold raised to 0.999: the 0.993 paraphrase misses');
is(ask($chat, 'Recommend a movie about space travel')->{cache}, 'MISS',
   'threshold: stored (2)');
is(ask($chat, 'Recommend a movie about time travel',
       headers => { 'X-AIGW-Cache-Threshold' => '0.5' })->{cache}, 'MISS',
   'threshold "lowered" to 0.5: a 0.68 neighbour still misses');
is(ask($chat, 'Recommend a film about space travel',
       headers => { 'X-AIGW-Cache-Threshold' => '0.5' })->{cache},
   'SEMANTIC_HIT', 'a lower header leaves the location\'s threshold');

my $bad = ask($chat, 'Recommend a film about space opera',
              headers => { 'X-AIGW-Cache-Threshold' => 'high' });
is($bad->{status}, 400, 'a bad threshold: 400');
is($bad->{json}{error}{code} // '', 'invalid_cache_threshold',
   'a bad threshold: said in OpenAI\'s format');

is(ask('/strict/v1/chat/completions', 'Who wrote the novel Dune?')->{cache},
   'MISS', 'aigw_cache_semantic_threshold 0.995: stored');
is(ask('/strict/v1/chat/completions', 'Who wrote the novel Dune, exactly?')
   ->{cache}, 'MISS', 'aigw_cache_semantic_threshold 0.995: 0.991 misses');
is(ask('/strict/v1/chat/completions', 'Who wrote the novel Dune???')
   ->{cache}, 'SEMANTIC_HIT', 'aigw_cache_semantic_threshold 0.995: 1.0 hits');

# a stream replay of a stored JSON answer parses as SSE

my $s = ask($chat, 'France\'s capital is what?', stream => 1);
is($s->{cache}, 'SEMANTIC_HIT', 'a stream: SEMANTIC_HIT');
like($s->{headers}, qr{^Content-Type: text/event-stream}mi, 'a stream: SSE');
my ($text, $done, $bad_events) = ('', 0, 0);
for my $ev (split /\n\n/, $s->{body}) {
    next unless $ev =~ /\S/;
    my ($data) = $ev =~ /^data: (.*)$/m;
    if (!defined $data) { $bad_events++; next; }
    if ($data eq '[DONE]') { $done++; next; }
    my $j = eval { decode_json($data) };
    if (!$j) { $bad_events++; next; }
    $text .= $j->{choices}[0]{delta}{content} // '' if @{ $j->{choices} };
}
is($bad_events, 0, 'a stream: every event is JSON');
is($done, 1, 'a stream: one [DONE]');
is($text, $a->{content}, 'a stream: the text of the stored answer');

# Anthropic's format: a paraphrase hits as well

my $an = sub {
    my ($q) = @_;
    my $r = $ngx->request('POST', '/v1/messages',
        { 'x-api-key' => 'sk-sem-acme', 'anthropic-version' => '2023-06-01',
          'Content-Type' => 'application/json' },
        encode_json({ model => 'claude-3-5-haiku', max_tokens => 64,
                      messages => [ { role => 'user', content => $q } ] }));
    ($r->{cache}) = $r->{headers} =~ /^X-AIGW-Cache:\s*(\S+)/mi;
    return $r;
};
is($an->('How do I fix a flat bicycle tire?')->{cache}, 'MISS',
   'Anthropic: stored');
my $ah = $an->('How can I repair a flat bicycle tire?');
is($ah->{cache}, 'SEMANTIC_HIT', 'Anthropic: a paraphrase hits');
like($ah->{body}, qr/"type":"message"/, 'Anthropic: a message');

# int8 vectors: the same hits and misses as float32's

my $i8 = '/int8/v1/chat/completions';
my $ia = ask($i8, 'What is the capital of France?');
is($ia->{cache}, 'MISS', 'int8: stored');
is(ask($i8, 'Tell me the capital of France.')->{cache}, 'SEMANTIC_HIT',
   'int8: a paraphrase hits');
is(ask($i8, 'what is actually the capital of france')->{cache},
   'SEMANTIC_HIT', 'int8: a paraphrase at 0.986 hits');
is(ask($i8, 'What is not the capital of France?')->{cache}, 'MISS',
   'int8: a negation misses');
is(ask($i8, 'What is the capital of Germany?')->{cache}, 'MISS',
   'int8: another entity misses');

# aigw_cache_semantic off: only exact hits

is(ask('/off/v1/chat/completions', 'Is coffee good for your health?')
   ->{cache}, 'MISS', 'off: stored');
is(ask('/off/v1/chat/completions', 'Is coffee good for the health?')
   ->{cache}, 'MISS', 'off: a paraphrase misses');

# the embedder down, slow or wrong: answered, one error line

for my $case ([ down => 'failed (status 500)' ],
              [ slow => 'failed (status 504)' ],
              [ bad => 'no embedding' ])
{
    my ($loc, $line) = @$case;
    my $t0 = time;
    my $r = ask("/$loc/v1/chat/completions", "The embedder is $loc?");
    my $took = time - $t0;
    is($r->{status}, 200, "embedder $loc: answered");
    is($r->{cache}, 'MISS', "embedder $loc: MISS");
    ok($took < 2.5, "embedder $loc: within the timeout ($took s)");
    like($ngx->error_log, qr/semantic cache: .*\Q$line\E/,
         "embedder $loc: an error line");
    is(ask("/$loc/v1/chat/completions", "The embedder is $loc?")->{cache},
       'HIT', "embedder $loc: the answer was stored (exact)");
}

# a full partition drops its oldest vectors, without an error

my $small = '/small/v1/chat/completions';
my @qs = ('Is coffee good for your health?', 'What is 12 plus 30?',
          'How long does it take to start a company in Estonia?',
          'At what temperature does water boil?',
          'Can I buy a car for 3000 dollars?');
for my $q (@qs) {
    my $r = ask($small, $q);
    is("$r->{status} $r->{cache}", '200 MISS', "small partition: \"$q\"");
}
is(ask($small, 'Can I purchase an automobile for 3000 dollars?')->{cache},
   'SEMANTIC_HIT', 'small partition: the newest is found');
is(ask($small, 'Is coffee good for the health?')->{cache}, 'MISS',
   'small partition: the oldest is gone');

# a partition of 3072-number vectors (five a block) is read eight
# blocks at a time, the worker let go between: a hit in its first slice
# and in its last, a miss read to its end, and another client served
# meanwhile

my $big = '/big/v1/chat/completions';
is(ask($big, 'What is the capital of France?')->{cache}, 'MISS',
   'a large partition: the first stored');
my $filled = 0;
for my $i (1 .. 100) {
    $filled++ if ask($big, "How many km is $i miles?")->{cache} eq 'MISS';
}
is($filled, 100, 'a large partition: 100 more stored');
is(ask($big, 'Who wrote the novel Dracula?')->{cache}, 'MISS',
   'a large partition: the last stored');

is(ask($big, 'what is actually the capital of france')->{cache},
   'SEMANTIC_HIT', 'a large partition: a hit in the first slice');
is(ask($big, 'who actually wrote the novel dracula')->{cache},
   'SEMANTIC_HIT', 'a large partition: a hit in the last slice');
is(ask($big, 'What is the capital of Spain?')->{cache}, 'MISS',
   'a large partition: a miss read to the end');

SKIP: {
    skip 'nginx without --with-debug writes no debug line', 1
        unless `$ngx->{nginx} -V 2>&1` =~ /--with-debug/;
    my $log = do { local $/; open my $fh, '<', "$dir/logs/big.log"; <$fh> }
              // '';
    my @on = $log =~ /semantic cache: the scan goes on at vector (\d+)/g;
    ok(@on >= 4 && grep({ $_ == 40 } @on) && grep({ $_ == 80 } @on),
       'a large partition: read in slices of 40 vectors (' . scalar(@on)
       . ' breaks)');
}

# metrics

my $m = $ngx->request('GET', '/metrics', {}, undef)->{body};
my ($hits) = $m =~ /^aigw_cache_semantic_lookups_total\{result="hit"\} (\d+)/m;
my ($errs) = $m =~ /^aigw_cache_semantic_lookups_total\{result="error"\} (\d+)/m;
my ($vecs) = $m =~ /^aigw_cache_semantic_vectors_total (\d+)/m;
ok(($hits // 0) >= 8, "metrics: semantic hits (" . ($hits // 'none') . ")");
is($errs // -1, 3, 'metrics: three embedder errors');
ok(($vecs // 0) >= 10, "metrics: vectors indexed (" . ($vecs // 'none') . ")");

unlike($ngx->error_log, qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg');

$ngx->stop;

# Two workers at one partition of 1536-dimension vectors (ten a block of
# the scan) in a zone too small for it: lookups scan it while the other
# worker's stores grow it, wrap its ring and evict it (and its
# neighbour's) for room; every request answered, no alert, a clean ASan.

my $ngx2 = AigwNginx->new;
my $port2 = $ngx2->port;

$ngx2->write_keys({ id => 'k_sem_acme', tenant => 'acme',
                    key => 'sk-sem-acme' });

$ngx2->write_http(<<"EOC", workers => 2, connections => 64);
    aigw_keys keys.json;
    aigw_cache_zone storm:384k;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_model gpt-4o ok:gpt-4o;
    server {
        listen 127.0.0.1:$port2 reuseport;
        aigw_cache on;
        aigw_cache_semantic /_embed;
        aigw_cache_semantic_model text-embedding-3-small;
        aigw_cache_semantic_partition 400;
        location /v1/ {
            aigw_pass;
        }
        location /i8/v1/ {
            aigw_cache_namespace i8;
            aigw_cache_semantic_precision int8;
            aigw_pass;
        }
        location /para/v1/ {
            aigw_cache_namespace para;
            aigw_cache_semantic_model mock-semantic;
            aigw_pass;
        }
@{[ embed_location('/_embed', "http://127.0.0.1:$mock/v1/embeddings") ]}
        location = /metrics {
            aigw_metrics;
        }
    }
EOC

ok($ngx2->start, 'two workers: nginx starts') or BAIL_OUT($ngx2->start_error);

sub ask2 {
    my ($path, $system, $text) = @_;
    my $res = $ngx2->request('POST', $path,
        { Authorization => 'Bearer sk-sem-acme',
          'Content-Type' => 'application/json' },
        JSON::PP->new->canonical->encode({ model => 'gpt-4o',
            messages => msgs(system => $system, user => $text) }));
    ($res->{cache}) = $res->{headers} =~ /^X-AIGW-Cache:\s*(\S+)/mi;
    $res->{cache} //= '';
    return $res;
}

# four clients, 45 questions each, two partitions (two system prompts)
# of float32 vectors, two of int8 (another namespace); a client's exit
# status is its count of unexpected answers

my @kids;
for my $c (0 .. 3) {
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $bad = 0;
        for my $i (0 .. 44) {
            # a quarter asked by two clients: exact hits and locks too
            my $n = $i % 4 ? "$c-$i" : $i;
            my $r = ask2($i % 3 ? '/v1/chat/completions'
                                : '/i8/v1/chat/completions',
                         'You are terse, prompt ' . ($i % 2),
                         "Storm question number $n, answer briefly");
            $bad++ unless $r->{status} == 200
                          && $r->{cache} =~ /^(MISS|HIT|SEMANTIC_HIT)$/;
        }
        POSIX::_exit($bad > 250 ? 250 : $bad);
    }
    push @kids, $pid;
}

my $unexpected = 0;
for my $pid (@kids) {
    waitpid($pid, 0);
    $unexpected += $? >> 8 || ($? & 127 ? 1 : 0);
}
is($unexpected, 0, 'two workers, four clients: every request answered 200');

my $m2 = $ngx2->request('GET', '/metrics', {}, undef)->{body};
my ($ev) = $m2 =~ /^aigw_cache_evictions_total (\d+)/m;
my ($vs) = $m2 =~ /^aigw_cache_semantic_vectors_total (\d+)/m;
ok(($vs // 0) >= 100, 'two workers: vectors indexed (' . ($vs // 'none')
   . ')');
ok(($ev // 0) > 0, 'two workers: the zone evicted ('
   . ($ev // 'none') . ')');

# the zone full of vectors stores an exact answer still

is(ask2('/v1/chat/completions', 'You are terse, prompt 0',
        'One more question after the storm')->{cache}, 'MISS',
   'a zone full of vectors: stored');
is(ask2('/v1/chat/completions', 'You are terse, prompt 0',
        'One more question after the storm')->{cache}, 'HIT',
   'a zone full of vectors: an exact hit');

# and a paraphrase still hits, whichever worker answers

is(ask2('/para/v1/chat/completions', 'x', 'What is the capital of France?')
   ->{cache}, 'MISS', 'two workers: stored');
is(ask2('/para/v1/chat/completions', 'x', 'Tell me the capital of France.')
   ->{cache}, 'SEMANTIC_HIT', 'two workers: a paraphrase hits');

my $log2 = $ngx2->error_log;
unlike($log2, qr/\[(alert|crit|emerg)\]|exited on signal|AddressSanitizer|runtime error/,
       'two workers: no alert, no crash, no sanitizer report');

$ngx2->stop;

done_testing;
